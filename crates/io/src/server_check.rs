//! Asking the configured server whether it accepts the `[redis]` directives: the part of
//! `check` that only redis-server itself can judge (a misspelled directive, a wrong number
//! of arguments, a value out of range).
//!
//! Theory of operation. [`probe_lines`] builds one redis.conf from every `[redis]` and
//! `[instance.redis]` directive of the group, each line remembering the TOML key it came
//! from, behind a header that makes the server harmless: `port 0` (it listens nowhere, so
//! it exits right after reading the file: "Configured to not listen anywhere"), a throw-away
//! `dir`, no password (none is needed to parse a file, and it must not reach argv or a
//! temp file). Redis stops at the first bad line and names it (`*** FATAL CONFIG FILE
//! ERROR`, `at line N`, `>>> 'maxmemroy 1gb'`, the reason); [`parse_fatal`] reads that,
//! [`problem`] maps it back to the instance and key, and [`ask_server`] (the only IO here)
//! drops the line and asks again until the server accepts the rest, so one `check` reports
//! every rejected directive.
//!
//! Redis 8.0 parses differently: a directive it does not know (with at least one argument)
//! is not an error while it reads the file but a *module configuration* kept for a module
//! that may register it later; when none does, it logs every such line at once, without a
//! line number, and exits (`Unresolved Configuration(s) Detected:`, `>>> 'maxmemroy 1gb'`,
//! `Module Configuration detected without loadmodule directive or no ApplyConfig call:
//! aborting`). That goes to its log, not to stderr, so the probe logs to stdout and ends
//! with `loglevel warning` (a `loglevel nothing` of the user's would silence it);
//! [`parse_unresolved`] reads it and [`unresolved_problems`] maps each line back by its
//! directive name. Valkey 8 does the same for dotted names only (`module.option`: Redis
//! 6.2 refuses those as bad directives); Redis 7.0 keeps dotted names for modules too but
//! exits on `port 0` before judging them, so its probe accepts them (a known gap: such a
//! typo shows only when the instance starts).

use std::fs::File;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use redisrepd_core::config::{Directive, Group, PerHost, Problem, Tls};
use redisrepd_core::render;
use redisrepd_core::tls::PairCheck;

/// One line of the probe file and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeLine {
    /// The line as written to the probe file.
    pub text: String,
    /// The TOML key it came from; `None` for the probe's own header.
    pub origin: Option<Origin>,
}

/// A directive's place in the TOML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `None` for `[redis]`, else the instance whose `[instance.redis]` holds it.
    pub instance: Option<String>,
    /// The key as `check` names it: `redis.maxmemroy`.
    pub key: String,
    /// The line as the real redis.conf will hold it (before the probe's path rewrites).
    pub line: String,
}

/// What Redis printed when it refused its configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fatal {
    /// 1-based line number in the probe file, when Redis gave one.
    pub line: Option<usize>,
    /// The offending line as Redis quoted it (`>>> '...'`).
    pub text: Option<String>,
    /// Redis's reason, e.g. `Bad directive or wrong number of arguments`.
    pub reason: String,
}

/// Directives whose value points at something a running instance may own: the probe
/// rewrites them so that it can never take over a live instance's socket or port. The
/// socket goes into a directory that does not exist: the line is still parsed, and the
/// server, failing to listen there, exits at once instead of serving.
fn harmless_value(key: &str, dir: &Path) -> Option<String> {
    match key.to_ascii_lowercase().as_str() {
        "unixsocket" => Some(quote_path(&dir.join("absent").join("probe.sock"))),
        "tls-port" | "cluster-port" => Some("0".to_owned()),
        _ => None,
    }
}

fn quote_path(path: &Path) -> String {
    let s = path.display().to_string();
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The probe file for `group`, with its throw-away data directory `dir`: a harmless header,
/// then `[redis]` once, then each instance's `[instance.redis]`, then a trailer that keeps
/// the server's warnings visible.
pub fn probe_lines(group: &Group, dir: &Path) -> Vec<ProbeLine> {
    let header = [
        "# redisrepd check: does the server accept these directives?".to_owned(),
        "port 0".to_owned(),
        "daemonize no".to_owned(),
        format!("dir {}", quote_path(dir)),
        "logfile \"\"".to_owned(),
    ];
    let mut lines: Vec<ProbeLine> = header
        .into_iter()
        .map(|text| ProbeLine { text, origin: None })
        .collect();
    let mut add = |instance: Option<&str>, list: &[Directive]| {
        for d in list {
            for v in &d.values {
                let line = render::directive_line(&d.key, v);
                let text = match harmless_value(&d.key, dir) {
                    Some(value) => format!("{} {value}", d.key),
                    None => line.clone(),
                };
                lines.push(ProbeLine {
                    text,
                    origin: Some(Origin {
                        instance: instance.map(str::to_owned),
                        key: format!("redis.{}", d.key),
                        line,
                    }),
                });
            }
        }
    };
    add(None, &group.redis);
    for inst in &group.instances {
        add(Some(&inst.name), &inst.redis);
    }
    // After the user's lines (which are still parsed, so still checked): Redis 8 reports
    // unknown directives in its log, at warning level.
    lines.push(ProbeLine {
        text: "loglevel warning".to_owned(),
        origin: None,
    });
    lines
}

/// The probe file's text.
pub fn probe_text(lines: &[ProbeLine]) -> String {
    lines.iter().map(|l| format!("{}\n", l.text)).collect()
}

/// Reads Redis's (or Valkey's) refusal of its configuration file from its stderr:
///
/// ```text
/// *** FATAL CONFIG FILE ERROR (Redis 7.0.15) ***
/// Reading the configuration file, at line 5
/// >>> 'maxmemroy 1gb'
/// Bad directive or wrong number of arguments
/// ```
pub fn parse_fatal(stderr: &str) -> Option<Fatal> {
    let mut lines = stderr
        .lines()
        .skip_while(|l| !l.contains("FATAL CONFIG FILE ERROR"));
    lines.next()?;
    let mut fatal = Fatal {
        line: None,
        text: None,
        reason: String::new(),
    };
    for l in lines {
        let l = l.trim_end();
        if let Some(n) = l.strip_prefix("Reading the configuration file, at line ") {
            fatal.line = n.trim().parse().ok();
        } else if let Some(quoted) = l.strip_prefix(">>> ") {
            let text = quoted
                .strip_prefix('\'')
                .and_then(|q| q.strip_suffix('\''))
                .unwrap_or(quoted);
            fatal.text = Some(text.to_owned());
        } else if !l.is_empty() && fatal.reason.is_empty() {
            fatal.reason = l.to_owned();
        }
    }
    if fatal.reason.is_empty() {
        fatal.reason = "no reason given".to_owned();
    }
    Some(fatal)
}

/// The index in `lines` of the line Redis refused, when it came from the TOML.
pub fn refused_index(lines: &[ProbeLine], fatal: &Fatal) -> Option<usize> {
    let index = fatal.line?.checked_sub(1)?;
    lines.get(index)?.origin.as_ref()?;
    Some(index)
}

/// Reads a refusal of module configurations that no module provides from the server's log
/// (`logfile ""`: stdout): the lines or names it quotes, each starting with the directive's
/// name. Redis 8.0 logs every directive it does not know this way, with its value:
///
/// ```text
/// 1:M 02 Dec 2026 04:44:00.991 # Unresolved Configuration(s) Detected:
/// 1:M 02 Dec 2026 04:44:00.991 # >>> 'maxmemroy 1gb'
/// 1:M 02 Dec 2026 04:44:00.991 # Module Configuration detected without loadmodule directive or no ApplyConfig call: aborting
/// ```
///
/// Valkey 8 does so only for dotted names (`module.option`), by name alone:
/// `# Unused Module Configuration: foo.bar`, then the same last line.
pub fn parse_unresolved(log: &str) -> Option<Vec<String>> {
    const ABORT: &str = "Module Configuration detected without loadmodule directive";
    const REDIS_HEAD: &str = "Unresolved Configuration(s) Detected";
    const VALKEY_ITEM: &str = "Unused Module Configuration: ";
    if !log.contains(ABORT) && !log.contains(REDIS_HEAD) {
        return None;
    }
    let mut quoted = Vec::new();
    let mut in_list = false;
    for l in log.lines().map(str::trim_end) {
        if l.contains(REDIS_HEAD) {
            in_list = true;
        } else if let Some((_, name)) = l.split_once(VALKEY_ITEM) {
            quoted.push(name.trim().to_owned());
        } else if let Some((_, rest)) = l.split_once(">>> ").filter(|_| in_list) {
            let text = rest
                .strip_prefix('\'')
                .and_then(|q| q.strip_suffix('\''))
                .unwrap_or(rest);
            quoted.push(text.to_owned());
        } else {
            in_list = false;
        }
    }
    Some(quoted)
}

/// The directive name of a probe line or of a line Redis quotes: its first word.
fn directive_name(line: &str) -> &str {
    line.split_whitespace().next().unwrap_or("")
}

/// The indexes in `lines` of every line from the TOML whose directive Redis 8 left
/// unresolved. Redis keeps one value per name (the last), so every line of that name is
/// meant; names compare without case, as Redis compares them.
pub fn unresolved_indexes(lines: &[ProbeLine], unresolved: &[String]) -> Vec<usize> {
    lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.origin.is_some())
        .filter(|(_, l)| {
            unresolved
                .iter()
                .any(|u| directive_name(u).eq_ignore_ascii_case(directive_name(&l.text)))
        })
        .map(|(i, _)| i)
        .collect()
}

/// The problems `check` reports for Redis 8's unresolved directives: one per line from the
/// TOML, naming the instance and key, or one for the whole probe when none maps back.
pub fn unresolved_problems(
    lines: &[ProbeLine],
    unresolved: &[String],
    server: &str,
) -> Vec<Problem> {
    let indexes = unresolved_indexes(lines, unresolved);
    if indexes.is_empty() {
        let named = if unresolved.is_empty() {
            "directives it does not name".to_owned()
        } else {
            let list: Vec<String> = unresolved.iter().map(|u| format!("`{u}`")).collect();
            format!("the directive(s) {}", list.join(", "))
        };
        return vec![Problem::new(
            None,
            "redis",
            format!(
                "`{server}` does not know {named}: it reports them as module configurations \
                 that no loaded module provides; check `[redis]` and `[instance.redis]`"
            ),
        )];
    }
    indexes
        .into_iter()
        .filter_map(|i| lines[i].origin.as_ref())
        .map(|o| {
            Problem::new(
                o.instance.as_deref(),
                &o.key,
                format!(
                    "`{server}` rejects `{}`: unknown directive (it reports it as a module \
                     configuration that no loaded module provides); check the directive's \
                     spelling, or load the module that provides it with `loadmodule`",
                    o.line
                ),
            )
        })
        .collect()
}

/// The problem `check` reports for a refused line: the instance, the key, the line and
/// Redis's reason, with what to do.
pub fn problem(lines: &[ProbeLine], fatal: &Fatal, server: &str) -> Problem {
    match refused_index(lines, fatal).and_then(|i| lines[i].origin.as_ref()) {
        Some(o) => {
            let fix = if fatal.reason.starts_with("Bad directive") {
                "check the directive's spelling and its number of arguments"
            } else {
                "fix the value"
            };
            Problem::new(
                o.instance.as_deref(),
                &o.key,
                format!("`{server}` rejects `{}`: {}; {fix}", o.line, fatal.reason),
            )
        }
        None => Problem::new(
            None,
            "redis",
            format!(
                "`{server}` rejects the configuration redisrepd gives it{}: {}",
                fatal
                    .text
                    .as_ref()
                    .map(|t| format!(" at `{t}`"))
                    .unwrap_or_default(),
                fatal.reason
            ),
        ),
    }
}

/// What one run of the server said about a probe file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It read the file (and exited, listening nowhere).
    Accepted,
    /// It stopped at one line (every server).
    Refused(Fatal),
    /// It read the file but knew none of these lines (Redis 8: unresolved module
    /// configurations).
    Unresolved(Vec<String>),
}

/// The verdict from what the server wrote: a refusal on stderr comes first (it stops
/// there), then Redis 8's unresolved directives in its log on stdout.
pub fn verdict(stdout: &str, stderr: &str) -> Verdict {
    if let Some(fatal) = parse_fatal(stderr) {
        return Verdict::Refused(fatal);
    }
    match parse_unresolved(stdout).or_else(|| parse_unresolved(stderr)) {
        Some(quoted) => Verdict::Unresolved(quoted),
        None => Verdict::Accepted,
    }
}

/// Asks `server` (a resolved path) whether it accepts every `[redis]` and `[instance.redis]`
/// directive of `group`; returns one problem per refused directive. `Err` when the server
/// could not be asked at all (the caller warns and goes on). A server that exits without
/// a refusal accepted the file (it may log nothing: `loglevel`).
pub fn ask_server(group: &Group, server: &Path) -> Result<Vec<Problem>, String> {
    let dir = tempfile::Builder::new()
        .prefix("redisrepd-check.")
        .tempdir()
        .map_err(|e| format!("cannot make a temporary directory: {e}"))?;
    let mut lines = probe_lines(group, dir.path());
    let shown = server.display().to_string();
    let mut problems = Vec::new();
    // Each round drops one refused line; bounded by the number of lines.
    for _ in 0..=lines.len() {
        match run_once(server, dir.path(), &probe_text(&lines))? {
            Verdict::Accepted => return Ok(problems),
            Verdict::Refused(fatal) => {
                problems.push(problem(&lines, &fatal, &shown));
                match refused_index(&lines, &fatal) {
                    Some(i) => {
                        lines.remove(i);
                    }
                    // Not a line from the TOML: nothing more to learn by asking again.
                    None => return Ok(problems),
                }
            }
            Verdict::Unresolved(quoted) => {
                problems.extend(unresolved_problems(&lines, &quoted, &shown));
                let drop = unresolved_indexes(&lines, &quoted);
                if drop.is_empty() {
                    return Ok(problems);
                }
                // Backwards, so that the indexes still hold.
                for i in drop.into_iter().rev() {
                    lines.remove(i);
                }
            }
        }
    }
    Ok(problems)
}

/// The TLS probe file for one pair: the harmless header, the `tls-*` lines an instance's
/// redis.conf would hold (`render::tls_lines`) with `tls-port 0`, so that the server loads
/// the certificates (`tls-replication yes` makes it do so even without a TLS port) and then
/// exits, listening nowhere.
pub fn tls_probe_text(tls: &Tls, cert: &Path, key: &Path, dir: &Path) -> String {
    let one = Tls {
        cert_file: PerHost::Every(cert.to_owned()),
        key_file: PerHost::Every(key.to_owned()),
        ..tls.clone()
    };
    let mut text = format!(
        "# redisrepd check: does the server load these certificates?\nport 0\ndaemonize no\n\
         dir {}\nlogfile \"\"\ntls-port 0\n",
        quote_path(dir)
    );
    render::tls_lines(
        &mut |k, v| text.push_str(&format!("{k} {v}\n")),
        &one,
        "any",
    );
    text
}

/// What the server made of a TLS probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsVerdict {
    /// It loaded the certificates (and exited: "Configured to not listen anywhere").
    Accepted,
    /// It has no TLS: Redis without `BUILD_TLS` refuses `tls-port` as a bad directive,
    /// Valkey 8.1 without its TLS module says "Failed finding TLS support".
    NoTls,
    /// It refused the files: its own log lines, without their prefix.
    Refused(Vec<String>),
}

/// Reads a TLS probe's outcome from the server's stderr (a refused directive) and log
/// (`logfile ""`: stdout).
pub fn tls_verdict(stdout: &str, stderr: &str) -> TlsVerdict {
    if let Some(fatal) = parse_fatal(stderr) {
        let on_tls = fatal.text.as_deref().is_some_and(|t| t.starts_with("tls-"));
        if on_tls && fatal.reason.starts_with("Bad directive") {
            return TlsVerdict::NoTls;
        }
        let text = fatal.text.map(|t| format!(" at `{t}`")).unwrap_or_default();
        return TlsVerdict::Refused(vec![format!("{}{text}", fatal.reason)]);
    }
    if stdout.contains("Failed finding TLS support") {
        return TlsVerdict::NoTls;
    }
    // `1:M 02 Dec 2026 16:57:03.353 # Failed to load private key: ...`
    let failed: Vec<&str> = stdout
        .lines()
        .map(|l| l.split_once(" # ").map_or(l, |(_, said)| said).trim())
        .filter(|l| l.starts_with("Failed"))
        .collect();
    // "Failed to configure TLS. Check logs for more info." ends every refusal: the lines
    // before it say why.
    let why: Vec<String> = failed
        .iter()
        .filter(|l| !l.starts_with("Failed to configure TLS"))
        .map(|l| (*l).to_owned())
        .collect();
    match (why.is_empty(), failed.first()) {
        (_, None) => TlsVerdict::Accepted,
        (false, _) => TlsVerdict::Refused(why),
        (true, Some(only)) => TlsVerdict::Refused(vec![(*only).to_owned()]),
    }
}

/// The problems of a TLS probe's verdict for `pair`.
pub fn tls_problems(
    verdict: TlsVerdict,
    server: &str,
    tls: &Tls,
    pair: &PairCheck,
) -> Vec<Problem> {
    match verdict {
        TlsVerdict::Accepted => Vec::new(),
        TlsVerdict::NoTls => vec![Problem::new(
            None,
            "tls",
            format!(
                "`{server}` was built without TLS: use a build with TLS (make BUILD_TLS=yes; \
                 Debian's packages have it) or remove [tls]"
            ),
        )],
        TlsVerdict::Refused(said) => vec![Problem::new(
            None,
            &pair.cert_key(),
            format!(
                "`{server}` refuses `{}` with key `{}` and ca_file `{}`: {}; fix the file it \
                 names",
                pair.cert.display(),
                pair.key.display(),
                tls.ca_file.display(),
                said.join("; ")
            ),
        )],
    }
}

/// Asks `server` to load each of `pairs` (with `tls`'s CA and settings) as an instance
/// would; one problem per pair it refuses, one in all when it has no TLS. `Err` when it
/// could not be asked.
pub fn ask_server_tls(
    tls: &Tls,
    pairs: &[PairCheck],
    server: &Path,
) -> Result<Vec<Problem>, String> {
    if pairs.is_empty() {
        return Ok(Vec::new());
    }
    let dir = tempfile::Builder::new()
        .prefix("redisrepd-check.")
        .tempdir()
        .map_err(|e| format!("cannot make a temporary directory: {e}"))?;
    let shown = server.display().to_string();
    let mut problems = Vec::new();
    let mut asked: Vec<(&Path, &Path)> = Vec::new();
    for pair in pairs {
        if asked.contains(&(pair.cert.as_path(), pair.key.as_path())) {
            continue;
        }
        asked.push((&pair.cert, &pair.key));
        let text = tls_probe_text(tls, &pair.cert, &pair.key, dir.path());
        let (stdout, stderr) = run_probe(server, dir.path(), &text)?;
        let verdict = tls_verdict(&stdout, &stderr);
        let no_tls = verdict == TlsVerdict::NoTls;
        problems.extend(tls_problems(verdict, &shown, tls, pair));
        if no_tls {
            // The same for every pair.
            break;
        }
    }
    Ok(problems)
}

/// How long one probe run may take. A server that read the file exits at once ("Configured
/// to not listen anywhere", or failing to listen on the rewritten `unixsocket`); one still
/// running after this got past the file too, and is killed.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts the server once on the probe file and waits (at most [`PROBE_TIMEOUT`]) until it
/// exits; reads its refusal, if any, from its stderr and its log (stdout).
fn run_once(server: &Path, dir: &Path, text: &str) -> Result<Verdict, String> {
    let (stdout, stderr) = run_probe(server, dir, text)?;
    Ok(verdict(&stdout, &stderr))
}

/// Starts the server once on `text` and waits (at most [`PROBE_TIMEOUT`]) until it exits;
/// its log (stdout) and stderr.
fn run_probe(server: &Path, dir: &Path, text: &str) -> Result<(String, String), String> {
    let probe = Probe::spawn(server, dir, "probe", text)?;
    let mut child = probe.child;
    if !exits_within(&child, PROBE_TIMEOUT) {
        let _ = child.kill();
    }
    let _ = child.wait();
    Ok((read(&probe.out), read(&probe.err)))
}

/// A server started on a throw-away config in `dir`, its output going to files.
pub(crate) struct Probe {
    pub(crate) child: std::process::Child,
    /// Its stdout (the log, with `logfile ""`).
    pub(crate) out: std::path::PathBuf,
    pub(crate) err: std::path::PathBuf,
}

impl Probe {
    /// Writes `text` to `dir/<name>.conf` (0600) and starts `server` on it, in its own
    /// process group, without the systemd variables of ours.
    pub(crate) fn spawn(
        server: &Path,
        dir: &Path,
        name: &str,
        text: &str,
    ) -> Result<Probe, String> {
        let conf = dir.join(format!("{name}.conf"));
        crate::files::write_atomic(&conf, text.as_bytes(), 0o600)
            .map_err(|e| format!("cannot write `{}`: {e}", conf.display()))?;
        // Files, not pipes: nothing to drain while waiting, and a full pipe cannot block it.
        let out = dir.join(format!("{name}.out"));
        let err = dir.join(format!("{name}.err"));
        let output = |path: &Path| {
            File::create(path).map_err(|e| format!("cannot create `{}`: {e}", path.display()))
        };
        let child = Command::new(server)
            .arg(&conf)
            .current_dir(dir)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .stdin(Stdio::null())
            .stdout(output(&out)?)
            .stderr(output(&err)?)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot run `{}`: {e}", server.display()))?;
        Ok(Probe { child, out, err })
    }
}

/// A probe's output file; empty when it cannot be read.
pub(crate) fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Waits for `child` to exit, up to `timeout`, on a pidfd (no polling loop).
fn exits_within(child: &std::process::Child, timeout: Duration) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    use rustix::process::{Pid, PidfdFlags, pidfd_open};
    let Some(pid) = i32::try_from(child.id()).ok().and_then(Pid::from_raw) else {
        return false;
    };
    let Ok(fd) = pidfd_open(pid, PidfdFlags::empty()) else {
        return false;
    };
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let Ok(ts) = Timespec::try_from(left) else {
            return false;
        };
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        match poll(&mut fds, Some(&ts)) {
            Ok(0) => return false,
            Ok(_) => return true,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn group(text: &str) -> Group {
        let full = format!(
            "[cluster]\nname = \"g\"\n{text}\n\
             [[instance]]\nname = \"m\"\nhost = \"h\"\nbind = \"127.0.0.1\"\nport = 7000\n\
             [[instance]]\nname = \"r\"\nhost = \"h\"\nbind = \"127.0.0.1\"\nport = 7001\n\
             replica_of = \"m\"\n[instance.redis]\nmaxmemroy = \"1gb\"\n"
        );
        redisrepd_core::config::parse(&full, Path::new("/etc/g.toml"), Path::new("/etc"))
            .expect("valid")
            .group
    }

    const REFUSAL: &str = "\n*** FATAL CONFIG FILE ERROR (Redis 7.0.15) ***\n\
        Reading the configuration file, at line 7\n\
        >>> 'maxmemroy 1gb'\n\
        Bad directive or wrong number of arguments\n";

    #[test]
    fn parse_fatal_reads_line_text_and_reason() {
        assert_eq!(
            parse_fatal(REFUSAL),
            Some(Fatal {
                line: Some(7),
                text: Some("maxmemroy 1gb".to_owned()),
                reason: "Bad directive or wrong number of arguments".to_owned(),
            })
        );
    }

    #[test]
    fn parse_fatal_of_a_clean_start_is_none() {
        assert_eq!(parse_fatal("1:C 25 Nov # Configuration loaded\n"), None);
        assert_eq!(parse_fatal(""), None);
    }

    #[test]
    fn parse_fatal_reads_valkey_too() {
        let valkey = "*** FATAL CONFIG FILE ERROR (Version 8.1.1) ***\n\
            Reading the configuration file, at line 2\n>>> 'save 3600'\nInvalid save parameters\n";
        let f = parse_fatal(valkey).expect("a refusal");
        assert_eq!(f.line, Some(2));
        assert_eq!(f.reason, "Invalid save parameters");
    }

    #[test]
    fn probe_lines_map_each_directive_to_its_key_and_instance() {
        let g = group("[redis]\nsave = [\"3600 1\", \"\"]\nappendonly = \"yes\"\n");
        let lines = probe_lines(&g, &PathBuf::from("/tmp/x"));
        let text = probe_text(&lines);
        assert!(text.starts_with("# redisrepd check"), "{text}");
        assert!(text.contains("\nport 0\n"), "{text}");
        assert!(text.contains("\ndir \"/tmp/x\"\n"), "{text}");
        assert!(!text.contains("requirepass"), "{text}");
        let from_toml: Vec<(&str, Option<&str>, &str)> = lines
            .iter()
            .filter_map(|l| l.origin.as_ref())
            .map(|o| (o.key.as_str(), o.instance.as_deref(), o.line.as_str()))
            .collect();
        assert_eq!(
            from_toml,
            [
                ("redis.save", None, "save 3600 1"),
                ("redis.save", None, "save \"\""),
                ("redis.appendonly", None, "appendonly yes"),
                ("redis.maxmemroy", Some("r"), "maxmemroy 1gb"),
            ]
        );
    }

    #[test]
    fn a_refused_line_names_instance_and_key() {
        let g = group("");
        let lines = probe_lines(&g, Path::new("/tmp/x"));
        let line = lines
            .iter()
            .position(|l| l.text == "maxmemroy 1gb")
            .unwrap()
            + 1;
        let fatal = Fatal {
            line: Some(line),
            text: Some("maxmemroy 1gb".to_owned()),
            reason: "Bad directive or wrong number of arguments".to_owned(),
        };
        let p = problem(&lines, &fatal, "redis-server");
        assert_eq!(p.instance.as_deref(), Some("r"));
        assert_eq!(p.key, "redis.maxmemroy");
        assert!(
            p.to_string().contains(
                "`redis-server` rejects `maxmemroy 1gb`: Bad directive or wrong number of \
                 arguments"
            ),
            "{p}"
        );
        assert_eq!(refused_index(&lines, &fatal), Some(line - 1));
    }

    #[test]
    fn a_refused_header_line_is_reported_without_a_key_to_drop() {
        let g = group("");
        let lines = probe_lines(&g, Path::new("/tmp/x"));
        let fatal = Fatal {
            line: Some(2),
            text: Some("port 0".to_owned()),
            reason: "odd".to_owned(),
        };
        assert_eq!(refused_index(&lines, &fatal), None);
        let p = problem(&lines, &fatal, "redis-server");
        assert!(p.to_string().contains("at `port 0`: odd"), "{p}");
    }

    #[test]
    fn sockets_and_ports_are_rewritten_into_the_probe_dir() {
        // (`tls-port` is [tls]'s now, refused in [redis]: `cluster-port` stands for both.)
        let g = group("[redis]\nunixsocket = \"/run/live.sock\"\ncluster-port = 16380\n");
        let lines = probe_lines(&g, Path::new("/tmp/x"));
        let text = probe_text(&lines);
        assert!(
            text.contains("unixsocket \"/tmp/x/absent/probe.sock\"\n"),
            "{text}"
        );
        assert!(text.contains("cluster-port 0\n"), "{text}");
        assert!(!text.contains("/run/live.sock"), "{text}");
        // ... while the message quotes the line as the user wrote it.
        let o = lines.iter().find_map(|l| l.origin.clone()).unwrap();
        assert_eq!(o.line, "unixsocket /run/live.sock");
    }

    /// Real outputs of each server on a probe file, captured into tests/fixtures.
    macro_rules! fixture {
        ($name:literal) => {
            include_str!(concat!("../../../tests/fixtures/server_check/", $name))
        };
    }

    /// The probe the fixtures were captured on: `save 3600 1`, `maxmemroy 1gb` (line 7),
    /// `appendonly yes`, each from `[redis]`.
    fn typo_probe() -> Vec<ProbeLine> {
        let mut lines: Vec<ProbeLine> = [
            "# redisrepd check: does the server accept these directives?",
            "port 0",
            "daemonize no",
            "dir \"/tmp/probe\"",
            "logfile \"\"",
        ]
        .into_iter()
        .map(|t| ProbeLine {
            text: t.to_owned(),
            origin: None,
        })
        .collect();
        for (key, line) in [
            ("save", "save 3600 1"),
            ("maxmemroy", "maxmemroy 1gb"),
            ("appendonly", "appendonly yes"),
        ] {
            lines.push(ProbeLine {
                text: line.to_owned(),
                origin: Some(Origin {
                    instance: None,
                    key: format!("redis.{key}"),
                    line: line.to_owned(),
                }),
            });
        }
        lines
    }

    #[test]
    fn every_server_refuses_the_typo_by_its_key() {
        let cases = [
            ("redis 6.2", "", fixture!("redis-6.2.typo.stderr")),
            ("redis 7.0", "", fixture!("redis-7.0.typo.stderr")),
            ("valkey 8.1", "", fixture!("valkey-8.1.typo.stderr")),
            ("redis 8.0", fixture!("redis-8.0.typo.stdout"), ""),
        ];
        let lines = typo_probe();
        for (server, stdout, stderr) in cases {
            let problems = match verdict(stdout, stderr) {
                Verdict::Refused(fatal) => {
                    assert_eq!(refused_index(&lines, &fatal), Some(6), "{server}");
                    vec![problem(&lines, &fatal, "redis-server")]
                }
                Verdict::Unresolved(quoted) => {
                    assert_eq!(quoted, ["maxmemroy 1gb"], "{server}");
                    assert_eq!(unresolved_indexes(&lines, &quoted), [6], "{server}");
                    unresolved_problems(&lines, &quoted, "redis-server")
                }
                Verdict::Accepted => panic!("{server}: accepted"),
            };
            assert_eq!(problems.len(), 1, "{server}");
            let p = &problems[0];
            assert_eq!(
                (p.instance.as_deref(), p.key.as_str()),
                (None, "redis.maxmemroy")
            );
            assert!(
                p.to_string()
                    .contains("`redis-server` rejects `maxmemroy 1gb`: "),
                "{server}: {p}"
            );
            assert!(p.to_string().contains("spelling"), "{server}: {p}");
        }
    }

    #[test]
    fn redis_8_reports_every_unknown_directive_at_once_by_name() {
        // Redis keeps one value per name, compared without case, and prints the value
        // unquoted: `MaxMemroy 2gb` replaced `maxmemroy 1gb`, `"60 1"` shows as `60 1`.
        let quoted = match verdict(fixture!("redis-8.0.two-typos.stdout"), "") {
            Verdict::Unresolved(q) => q,
            other => panic!("{other:?}"),
        };
        assert_eq!(quoted, ["save-evry 60 1", "maxmemroy 2gb"]);
        let g = group("[redis]\nmaxmemroy = \"1gb\"\nappendonly = \"yes\"\nsave-evry = \"60 1\"\n");
        let lines = probe_lines(&g, Path::new("/tmp/x"));
        let problems = unresolved_problems(&lines, &quoted, "redis-server");
        let named: Vec<(Option<&str>, &str)> = problems
            .iter()
            .map(|p| (p.instance.as_deref(), p.key.as_str()))
            .collect();
        assert_eq!(
            named,
            [
                (None, "redis.maxmemroy"),
                (None, "redis.save-evry"),
                (Some("r"), "redis.maxmemroy"),
            ]
        );
        assert!(
            problems[1]
                .to_string()
                .contains("rejects `save-evry 60 1`: unknown directive"),
            "{}",
            problems[1]
        );
    }

    #[test]
    fn valkey_names_an_unused_module_configuration() {
        assert_eq!(
            verdict(fixture!("valkey-8.1.module.stdout"), ""),
            Verdict::Unresolved(vec!["search.timeout".to_owned()])
        );
    }

    #[test]
    fn an_unresolved_line_not_from_the_toml_is_reported_on_the_whole_probe() {
        let lines = typo_probe();
        let quoted = vec!["nosuch 1".to_owned()];
        assert!(unresolved_indexes(&lines, &quoted).is_empty());
        let p = unresolved_problems(&lines, &quoted, "redis-server");
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].key, "redis");
        assert!(p[0].to_string().contains("`nosuch 1`"), "{}", p[0]);
        let p = unresolved_problems(&lines, &[], "redis-server");
        assert!(
            p[0].to_string()
                .contains("does not know directives it does not name"),
            "{}",
            p[0]
        );
    }

    #[test]
    fn a_clean_redis_8_run_is_accepted() {
        assert_eq!(
            verdict(fixture!("redis-8.0.accepted.stdout"), ""),
            Verdict::Accepted
        );
    }

    fn tls_group() -> (Group, PairCheck) {
        let g = group(
            "[tls]\ncert_file = \"/tls/r.crt\"\nkey_file = \"/tls/r.key\"\nca_file = \"/tls/ca.crt\"\n",
        );
        let tls = g.tls.clone().unwrap();
        let pair = redisrepd_core::tls::pairs_to_check(&g, &tls, "h").remove(0);
        (g, pair)
    }

    #[test]
    fn the_tls_probe_loads_the_pair_as_an_instance_would_and_listens_nowhere() {
        let (g, pair) = tls_group();
        let text = tls_probe_text(
            g.tls.as_ref().unwrap(),
            &pair.cert,
            &pair.key,
            Path::new("/tmp/x"),
        );
        for line in [
            "port 0\n",
            "tls-port 0\n",
            "tls-cert-file \"/tls/r.crt\"\n",
            "tls-key-file \"/tls/r.key\"\n",
            "tls-ca-cert-file \"/tls/ca.crt\"\n",
            "tls-replication yes\n",
            "logfile \"\"\n",
        ] {
            assert!(text.contains(line), "{line}: {text}");
        }
    }

    #[test]
    fn every_servers_tls_verdict() {
        assert_eq!(
            tls_verdict(fixture!("redis-7.0.tls-accepted.stdout"), ""),
            TlsVerdict::Accepted
        );
        assert_eq!(
            tls_verdict("", fixture!("redis-6.2.tls-absent.stderr")),
            TlsVerdict::NoTls
        );
        assert_eq!(
            tls_verdict(fixture!("valkey-8.1.tls-absent.stdout"), ""),
            TlsVerdict::NoTls
        );
        assert_eq!(
            tls_verdict(fixture!("redis-7.0.tls-mismatch.stdout"), ""),
            TlsVerdict::Refused(vec![
                "Failed to load private key: /tmp/tls/ca.key: error:05800074:x509 certificate \
                 routines::key values mismatch"
                    .to_owned()
            ])
        );
        assert_eq!(
            tls_verdict(fixture!("redis-8.0.tls-missing-cert.stdout"), ""),
            TlsVerdict::Refused(vec![
                "Failed to load certificate: /tmp/tls/nosuch.crt: error:80000002:system \
                 library::No such file or directory"
                    .to_owned()
            ])
        );
        // Any other directive refused is the server's words too.
        let other = "*** FATAL CONFIG FILE ERROR (Redis 7.0.15) ***\nReading the configuration \
            file, at line 9\n>>> 'tls-auth-clients maybe'\nargument(s) must be one of...\n";
        assert!(matches!(tls_verdict("", other), TlsVerdict::Refused(_)));
    }

    #[test]
    fn tls_problems_name_the_server_and_the_files() {
        let (g, pair) = tls_group();
        let tls = g.tls.as_ref().unwrap();
        let p = tls_problems(TlsVerdict::NoTls, "/opt/valkey-server", tls, &pair);
        assert_eq!(
            p[0].to_string(),
            "key `tls`: `/opt/valkey-server` was built without TLS: use a build with TLS \
             (make BUILD_TLS=yes; Debian's packages have it) or remove [tls]"
        );
        let p = tls_problems(
            TlsVerdict::Refused(vec!["Failed to load private key: x".into()]),
            "redis-server",
            tls,
            &pair,
        );
        let text = p[0].to_string();
        assert!(
            text.starts_with(
                "key `tls.cert_file`: `redis-server` refuses `/tls/r.crt` with key `/tls/r.key` \
                 and ca_file `/tls/ca.crt`: Failed to load private key: x"
            ),
            "{text}"
        );
        assert!(tls_problems(TlsVerdict::Accepted, "s", tls, &pair).is_empty());
    }

    #[test]
    fn the_probe_ends_by_keeping_warnings_visible() {
        let g = group("[redis]\nloglevel = \"nothing\"\n");
        let lines = probe_lines(&g, Path::new("/tmp/x"));
        let last = lines.last().unwrap();
        assert_eq!(
            (last.text.as_str(), &last.origin),
            ("loglevel warning", &None)
        );
        assert!(probe_text(&lines).contains("\nloglevel nothing\n"));
    }
}
