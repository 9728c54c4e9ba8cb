//! The text forms of `status`: the default table (at most [`NARROW_WIDTH`] columns), the
//! wide one, and the lines that name each host's HTTP endpoint.

use super::record::{HttpEndpoint, InstanceStatus};

/// The lines under the table: each host's endpoint and whether it listens.
pub fn endpoints_table(list: &[HttpEndpoint]) -> String {
    let mut out = String::new();
    for e in list {
        let state = match &e.error {
            None => "listening".to_owned(),
            Some(why) => why.clone(),
        };
        out.push_str(&format!(
            "http endpoint of host {}: http://{} ({state})\n",
            e.host, e.address
        ));
    }
    out
}

/// The width the default table fits in.
pub const NARROW_WIDTH: usize = 100;

/// Spaces between two columns of the default table.
const GAP: usize = 2;

/// The file's role: `master` or `replica of UPSTREAM`.
fn configured_role(s: &InstanceStatus) -> String {
    match &s.replica_of {
        Some(up) => format!("replica of {up}"),
        None => "master".to_owned(),
    }
}

/// What it runs as, by its INFO: `master`, `replica of UPSTREAM` (`replica` when the
/// upstream is no instance of the file); `None` when it does not answer.
fn actual_role(s: &InstanceStatus) -> Option<String> {
    match (&s.role, &s.upstream) {
        (Some(role), Some(up)) if role == "replica" => Some(format!("replica of {up}")),
        (Some(role), _) => Some(role.clone()),
        (None, _) => None,
    }
}

/// The default table's role: the actual one, `*` when it differs from the file's (a
/// failover, a promotion), the file's in parentheses when the instance does not answer.
/// The second value says whether it differs.
fn role_cell(s: &InstanceStatus) -> (String, bool) {
    let configured = configured_role(s);
    match actual_role(s) {
        None => (format!("({configured})"), false),
        // A replica of an upstream the file does not name: the same role, as far as the
        // file goes.
        Some(actual) if actual == configured || (actual == "replica" && s.replica_of.is_some()) => {
            (actual, false)
        }
        Some(actual) => (format!("{actual}*"), true),
    }
}

/// The default table's note: the instance's last error, then warnings, then how its last
/// sync went (`full sync, in sync 1.0s after start` says what it is without a label).
fn note(s: &InstanceStatus) -> String {
    let mut note: Vec<String> = Vec::new();
    note.extend(s.last_error.iter().cloned());
    note.extend(s.warnings.iter().cloned());
    note.extend(s.last_sync.iter().cloned());
    note.join("; ")
}

/// `text` cut to `width` characters, the last one `…` when anything was cut.
fn cut(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(width.saturating_sub(1)).collect();
    if width > 0 {
        out.push('…');
    }
    out
}

/// Column widths that fit `max`: the natural ones when they do; else the note (the last
/// column) gives way down to `note_min`, then the widest of `shrinkable` (column, least
/// width) one character at a time, then the note down to its header.
fn fit(
    natural: &[usize],
    max: usize,
    note_min: usize,
    shrinkable: &[(usize, usize)],
) -> Vec<usize> {
    let mut w = natural.to_vec();
    let total = |w: &[usize]| w.iter().sum::<usize>() + GAP * w.len().saturating_sub(1);
    let last = w.len() - 1;
    let others = total(&w) - w[last];
    if total(&w) > max {
        w[last] = max.saturating_sub(others).max(note_min.min(natural[last]));
    }
    while total(&w) > max {
        let Some(&(col, _)) = shrinkable
            .iter()
            .filter(|(c, least)| w[*c] > *least)
            .max_by_key(|(c, _)| w[*c])
        else {
            break;
        };
        w[col] -= 1;
    }
    if total(&w) > max {
        let over = total(&w) - max;
        w[last] = w[last].saturating_sub(over).max("NOTE".len());
    }
    w
}

/// The default table, at most [`NARROW_WIDTH`] columns wide: name, host, role (actual),
/// state, pid, a replica's lag or a master's offset, and the note, cut with `…`
/// ([`wide_table`] has every column and the whole note).
pub fn table(list: &[InstanceStatus]) -> String {
    let header = ["NAME", "HOST", "ROLE", "STATE", "PID", "LAG/OFFSET", "NOTE"];
    let mut differs = false;
    let rows: Vec<[String; 7]> = list
        .iter()
        .map(|s| {
            let (role, d) = role_cell(s);
            differs |= d;
            let position = match (s.role.as_deref(), s.lag_bytes, s.repl_offset) {
                (Some("replica"), Some(lag), _) => format!("lag {lag}"),
                (Some("master"), _, Some(offset)) => format!("offset {offset}"),
                _ => "-".to_owned(),
            };
            [
                s.name.clone(),
                s.host.clone(),
                role,
                s.state.as_str().to_owned(),
                s.pid.map_or_else(|| "-".to_owned(), |p| p.to_string()),
                position,
                note(s),
            ]
        })
        .collect();
    let natural: Vec<usize> = (0..header.len())
        .map(|c| {
            rows.iter()
                .map(|r| r[c].chars().count())
                .chain([header[c].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let widths = fit(&natural, NARROW_WIDTH, 24, &[(0, 12), (1, 8), (2, 14)]);
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{:<w$}", cut(cell, *w)))
            .collect();
        let mut l = padded.join(&" ".repeat(GAP)).trim_end().to_owned();
        l.push('\n');
        l
    };
    let mut out = line(&header.map(str::to_owned));
    for r in &rows {
        out.push_str(&line(r));
    }
    if differs {
        out.push_str("* not the role the file gives it (`status --wide` shows both)\n");
    }
    out
}

/// The table of `status --wide`: every column, and the whole note.
pub fn wide_table(list: &[InstanceStatus]) -> String {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::NOTHING);
    t.set_header([
        "NAME", "HOST", "ADDRESS", "ROLE", "ACTUAL", "STATE", "SERVER", "PID", "UPTIME",
        "RESTARTS", "LINK", "OFFSET", "LAG", "NOTE",
    ]);
    let dash = || "-".to_owned();
    for s in list {
        let role = match &s.replica_of {
            Some(up) => format!("replica of {up}"),
            None => "master".to_owned(),
        };
        let mut note: Vec<String> = Vec::new();
        if let Some(e) = &s.last_error {
            note.push(e.clone());
        }
        if let Some(sync) = &s.last_sync {
            note.push(format!("last sync: {sync}"));
        }
        note.extend(s.warnings.iter().cloned());
        t.add_row([
            s.name.clone(),
            s.host.clone(),
            format!("{}:{}", s.bind, s.port),
            role,
            match (&s.role, &s.upstream) {
                (Some(role), Some(up)) if role == "replica" => format!("replica of {up}"),
                (Some(role), _) => role.clone(),
                (None, _) => dash(),
            },
            s.state.as_str().to_owned(),
            s.server.clone().unwrap_or_else(dash),
            s.pid.map_or_else(dash, |p| p.to_string()),
            s.uptime_s.map_or_else(dash, |u| format!("{u}s")),
            s.restarts.to_string(),
            s.master_link_status.clone().unwrap_or_else(dash),
            s.repl_offset.map_or_else(dash, |o| o.to_string()),
            s.lag_bytes.map_or_else(dash, |l| l.to_string()),
            note.join("; "),
        ]);
    }
    format!("{t}\n")
}

#[cfg(test)]
mod tests {
    use super::super::record::StateLabel;
    use super::super::record::tests::group;
    use super::*;
    use crate::config::Group;

    #[test]
    fn each_hosts_endpoint_is_a_line_with_its_state() {
        let list = [
            HttpEndpoint {
                host: "a".into(),
                address: "127.0.0.1:9765".into(),
                error: None,
            },
            HttpEndpoint {
                host: "b".into(),
                address: "127.0.0.2:9765".into(),
                error: Some("cannot listen on 127.0.0.2:9765: Address in use".into()),
            },
        ];
        assert_eq!(
            endpoints_table(&list),
            "http endpoint of host a: http://127.0.0.1:9765 (listening)\n\
             http endpoint of host b: http://127.0.0.2:9765 (cannot listen on 127.0.0.2:9765: \
             Address in use)\n"
        );
        assert_eq!(endpoints_table(&[]), "");
    }

    #[test]
    fn table_lists_every_instance() {
        let g = group();
        let list: Vec<_> = g
            .instances
            .iter()
            .map(InstanceStatus::from_config)
            .collect();
        let t = wide_table(&list);
        assert!(
            t.contains("replica of m") && t.contains("127.0.0.1:2"),
            "{t}"
        );
        let t = table(&list);
        assert!(
            t.contains("(replica of m)") && t.contains("unreachable"),
            "{t}"
        );
    }

    /// A record as a daemon fills it in, with a long name and a long note.
    fn long(g: &Group, at: usize, name: &str, note_len: usize) -> InstanceStatus {
        let mut s = InstanceStatus::from_config(&g.instances[at]);
        s.name = name.to_owned();
        s.host = "a-host-with-a-rather-long-name.example.org".to_owned();
        s.state = StateLabel::Running;
        s.pid = Some(4_194_304);
        s.last_error = Some("x".repeat(note_len));
        s.warnings
            .push("mixed servers in the group: redis 7.0.15 (m), valkey 8.1.8 (r)".into());
        s.last_sync = Some("full sync, in sync 1.1s after start".into());
        s
    }

    #[test]
    fn the_default_table_fits_100_columns_and_cuts_long_notes() {
        let g = group();
        let mut m = long(&g, 0, &"m".repeat(60), 300);
        let mut r = long(&g, 1, "r", 10);
        m.role = Some("master".into());
        m.repl_offset = Some(123_456_789_012);
        r.role = Some("replica".into());
        r.upstream = Some("m".into());
        r.lag_bytes = Some(1_048_576);
        let t = table(&[m.clone(), r.clone()]);
        for line in t.lines() {
            assert!(
                line.chars().count() <= NARROW_WIDTH,
                "{} columns: {line}\n{t}",
                line.chars().count()
            );
        }
        assert!(
            t.lines().any(|l| l.ends_with('…')),
            "a cut note ends with …:\n{t}"
        );
        assert!(
            t.contains("offset 123456789012") && t.contains("lag 1048576"),
            "{t}"
        );
        assert!(t.contains("4194304"), "{t}");
        // The wide form keeps every column and the whole note.
        let wide = wide_table(&[m.clone(), r.clone()]);
        assert!(
            wide.contains(&"x".repeat(300)) && wide.contains("UPTIME"),
            "{wide}"
        );
        // Short records: nothing cut.
        m.name = "m".into();
        m.host = "a".into();
        m.last_error = None;
        m.warnings.clear();
        m.pid = Some(4242);
        m.repl_offset = Some(0);
        let t = table(&[m]);
        assert!(!t.contains('…'), "{t}");
        assert!(t.contains("  full sync, in sync 1.1s after start"), "{t}");
    }

    #[test]
    fn a_role_other_than_the_files_is_marked() {
        let g = group();
        let mut m = InstanceStatus::from_config(&g.instances[0]);
        let mut r = InstanceStatus::from_config(&g.instances[1]);
        m.role = Some("master".into());
        r.role = Some("replica".into());
        r.upstream = Some("m".into());
        let t = table(&[m.clone(), r.clone()]);
        assert!(!t.contains('*'), "{t}");
        // After a failover to r: both differ from the file.
        m.role = Some("replica".into());
        m.upstream = Some("r".into());
        r.role = Some("master".into());
        r.upstream = None;
        let t = table(&[m, r]);
        assert!(t.contains("replica of r*") && t.contains("master*"), "{t}");
        assert!(t.contains("* not the role the file gives it"), "{t}");
    }
}
