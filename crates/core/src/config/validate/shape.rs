//! Deserializing the file with every problem of shape collected (unknown keys, values of
//! the wrong type, missing keys), each message showing its own line.

use crate::config::raw::RawFile;

/// What [`deserialize_all`] found.
pub(super) struct Shape {
    /// The file as deserialized once every problem was taken out; `None` when one could
    /// not be.
    pub(super) raw: Option<RawFile>,
    /// toml's message for each problem, in the file's order.
    pub(super) errors: Vec<String>,
    /// A bad or missing value was replaced by a stand-in to read on.
    pub(super) stand_ins: bool,
}

/// Values tried in place of a bad or missing one, so that deserializing goes on past it:
/// one of them suits each type of the file.
const STAND_INS: &[&str] = &["1", "\"x\"", "\"127.0.0.1\"", "false", "[]", "{}"];

/// At most this many problems are reported (a file of another program, say).
const MAX_PROBLEMS: usize = 50;

/// Deserializes `text` into a [`RawFile`], collecting every problem of shape (unknown keys,
/// values of the wrong type or out of range, missing keys) rather than the first: toml
/// stops at the first, so each is taken out of the parsed document (an unknown key or a
/// bad value removed, a stand-in put where a required key is missing) and the document
/// deserialized again. The spans stay those of `text`, so each message shows its own line.
/// A syntax error is the only problem reported: it is the `Err`.
pub(super) fn deserialize_all(text: &str) -> Result<Shape, String> {
    use serde::Deserialize as _;
    let doc = toml::de::DeTable::parse(text).map_err(|e| describe_toml_error(text, &e))?;
    let span = doc.span();
    let mut root = toml::de::DeValue::Table(doc.into_inner());
    let attempt = |root: &toml::de::DeValue<'_>| -> Result<RawFile, toml::de::Error> {
        let toml::de::DeValue::Table(t) = root else {
            unreachable!("the root stays a table")
        };
        let de = toml::de::Deserializer::from(toml::Spanned::new(span.clone(), t.clone()));
        RawFile::deserialize(de).map_err(|mut e| {
            e.set_input(Some(text));
            e
        })
    };
    let mut shape = Shape {
        raw: None,
        errors: Vec::new(),
        stand_ins: false,
    };
    let mut repairs = Repairs::default();
    let mut outcome = attempt(&root);
    for _ in 0..4 * MAX_PROBLEMS {
        let Err(e) = &outcome else { break };
        let consequence = repairs.caused(&root, e);
        if !consequence {
            shape.errors.push(describe_toml_error(text, e));
        }
        if shape.errors.len() >= MAX_PROBLEMS {
            return Ok(shape);
        }
        let Some((next, stand_in)) = repairs.repair(&mut root, e, &attempt) else {
            return Ok(shape);
        };
        shape.stand_ins |= stand_in;
        outcome = next;
    }
    shape.raw = outcome.ok();
    Ok(shape)
}

/// One step into the parsed document.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

type Span = std::ops::Range<usize>;
type Attempt<'a, 'i> = dyn Fn(&toml::de::DeValue<'i>) -> Result<RawFile, toml::de::Error> + 'a;

/// What [`deserialize_all`] took out or put in so far: the errors that follow from its own
/// changes are not the file's.
#[derive(Default)]
struct Repairs {
    /// Bad values removed: (table, key). A "missing field" for one of them follows from
    /// the removal (the key is required): a stand-in goes there, nothing is reported.
    removed: Vec<(Vec<Step>, String)>,
    /// The spans of stand-in tables: their missing keys are not the file's either.
    tables: Vec<Span>,
}

impl Repairs {
    /// Whether `e` follows from an earlier repair rather than from the file.
    fn caused(&self, root: &toml::de::DeValue<'_>, e: &toml::de::Error) -> bool {
        let (Some(key), Some(at)) = (missing_field(e.message()), e.span()) else {
            return false;
        };
        if self.tables.contains(&at) {
            return true;
        }
        locate(root, &at)
            .is_some_and(|(table, _)| self.removed.iter().any(|(t, k)| *t == table && k == key))
    }

    /// Changes `root` so that the error `e` goes away; the next attempt's outcome, and
    /// whether a stand-in value was used. `None` when `e` cannot be taken out (then no
    /// later problem can be found).
    fn repair<'i>(
        &mut self,
        root: &mut toml::de::DeValue<'i>,
        e: &toml::de::Error,
        attempt: &Attempt<'_, 'i>,
    ) -> Option<(Result<RawFile, toml::de::Error>, bool)> {
        let at = e.span()?;
        if let Some(key) = missing_field(e.message()) {
            let (table, on_key) = locate(root, &at)?;
            if on_key {
                return None;
            }
            // The stand-in's own span: empty, at the end of the table's, so that neither
            // it nor its key is taken for the table when a later error points there.
            let mark = at.end..at.end;
            // The next error must be about something else: not the stand-in's type, not
            // this key missing still.
            let gone = |next: &Result<RawFile, toml::de::Error>| match next {
                Ok(_) => true,
                Err(n) => {
                    n.span() != Some(mark.clone())
                        && !(n.span() == Some(at.clone())
                            && missing_field(n.message()) == Some(key))
                }
            };
            for stand_in in STAND_INS {
                let value = stand_in_value(stand_in, &mark)?;
                let is_table = matches!(value.get_ref(), toml::de::DeValue::Table(_));
                let toml::de::DeValue::Table(t) = node_mut(root, &table)? else {
                    return None;
                };
                t.insert(
                    toml::Spanned::new(mark.clone(), key.to_owned().into()),
                    value,
                );
                let next = attempt(root);
                if gone(&next) {
                    if is_table {
                        self.tables.push(mark);
                    }
                    self.removed.retain(|(t, k)| !(*t == table && k == key));
                    return Some((next, true));
                }
            }
            return None;
        }
        let (mut path, on_key) = locate(root, &at)?;
        // A bad element of an array of values: the whole array goes.
        while matches!(path.last(), Some(Step::Index(_)))
            && !matches!(node_mut(root, &path), Some(toml::de::DeValue::Table(_)))
        {
            path.pop();
        }
        let Some(Step::Key(key)) = path.pop() else {
            return None;
        };
        let toml::de::DeValue::Table(t) = node_mut(root, &path)? else {
            return None;
        };
        t.remove(key.as_str())?;
        if !on_key {
            self.removed.push((path, key));
        }
        Some((attempt(root), false))
    }
}

/// The key of serde's "missing field `KEY`".
fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

/// A stand-in value parsed from TOML, placed at `span`.
fn stand_in_value<'i>(
    text: &'static str,
    span: &std::ops::Range<usize>,
) -> Option<toml::Spanned<toml::de::DeValue<'i>>> {
    let value = toml::de::DeValue::parse(text).ok()?.into_inner();
    Some(toml::Spanned::new(span.clone(), value))
}

/// The deepest entry of `root` whose key (`true`) or value (`false`) the span `at` is, or
/// else whose value holds it: its path.
fn locate(root: &toml::de::DeValue<'_>, at: &std::ops::Range<usize>) -> Option<(Vec<Step>, bool)> {
    let mut best: Option<(Vec<Step>, bool, usize)> = None;
    let mut path = Vec::new();
    // The root: a key missing from the file's top level.
    let end = match root {
        toml::de::DeValue::Table(t) => t.values().map(|v| v.span().end).max().unwrap_or(0),
        _ => 0,
    };
    if at.end <= end || at.start == 0 {
        best = Some((Vec::new(), false, usize::MAX));
    }
    visit(root, at, &mut path, &mut best);
    best.map(|(p, on_key, _)| (p, on_key))
}

/// [`locate`]'s walk: an exact key or value span wins over a value that holds `at`, and a
/// smaller holder over a larger one.
fn visit(
    value: &toml::de::DeValue<'_>,
    at: &std::ops::Range<usize>,
    path: &mut Vec<Step>,
    best: &mut Option<(Vec<Step>, bool, usize)>,
) {
    let consider = |path: &Vec<Step>,
                    key: Option<std::ops::Range<usize>>,
                    span: std::ops::Range<usize>,
                    best: &mut Option<(Vec<Step>, bool, usize)>| {
        // Rank: 0 exact key, 1 exact value, 2 + width for a holder.
        let rank = if key.as_ref() == Some(at) {
            Some((0, true))
        } else if span == *at {
            Some((1, false))
        } else if span.start <= at.start && at.end <= span.end {
            Some((2 + (span.end - span.start), false))
        } else {
            None
        };
        if let Some((rank, on_key)) = rank
            && best
                .as_ref()
                .is_none_or(|(_, _, r)| rank < *r || (rank == *r && rank < 2))
        {
            *best = Some((path.clone(), on_key, rank));
        }
    };
    match value {
        toml::de::DeValue::Table(t) => {
            for (k, v) in t {
                path.push(Step::Key(k.get_ref().to_string()));
                consider(path, Some(k.span()), v.span(), best);
                visit(v.get_ref(), at, path, best);
                path.pop();
            }
        }
        toml::de::DeValue::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                path.push(Step::Index(i));
                consider(path, None, v.span(), best);
                visit(v.get_ref(), at, path, best);
                path.pop();
            }
        }
        _ => {}
    }
}

/// The value at `path` under `root`.
fn node_mut<'a, 'i>(
    root: &'a mut toml::de::DeValue<'i>,
    path: &[Step],
) -> Option<&'a mut toml::de::DeValue<'i>> {
    let Some((first, rest)) = path.split_first() else {
        return Some(root);
    };
    let next = match (first, root) {
        (Step::Key(k), toml::de::DeValue::Table(t)) => t.get_mut(k.as_str())?.get_mut(),
        (Step::Index(i), toml::de::DeValue::Array(a)) => a.get_mut(*i)?.get_mut(),
        _ => return None,
    };
    node_mut(next, rest)
}

/// toml's own message shows line, column and a caret; add which `[[instance]]` it is in,
/// because a `port = "x"` line alone does not say which of five instances is wrong.
fn describe_toml_error(text: &str, err: &toml::de::Error) -> String {
    let base = err.to_string().trim_end().to_owned();
    let Some(span) = err.span() else { return base };
    // Up to the end of the error's line: a missing key is reported at its table's
    // `[[instance]]` header, which must count as the instance the error is in.
    let start = span.start.min(text.len());
    let line_end = text[start..].find('\n').map_or(text.len(), |n| start + n);
    let before = &text[..line_end];
    let index = before
        .lines()
        .filter(|l| l.trim_start().starts_with("[[instance]]"))
        .count();
    if index == 0 || is_after_other_section(before) {
        return base;
    }
    let name = toml::from_str::<toml::Table>(text).ok().and_then(|t| {
        t.get("instance")?
            .as_array()?
            .get(index - 1)?
            .get("name")?
            .as_str()
            .map(str::to_owned)
    });
    match name {
        Some(name) => format!("in instance `{name}`: {base}"),
        None => format!("in [[instance]] number {index}: {base}"),
    }
}

/// True when the last section header before the error is a top-level one such as
/// `[supervise]`, so the error is not inside an instance.
fn is_after_other_section(before: &str) -> bool {
    before
        .lines()
        .rev()
        .map(str::trim_start)
        .find(|l| l.starts_with('['))
        .is_some_and(|l| !l.starts_with("[[instance]]") && !l.starts_with("[instance."))
}
