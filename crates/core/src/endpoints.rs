//! The health endpoints for load balancers and probes (`docs/reference/cli.md`, "HTTP endpoints"):
//! `/master/<instance>`, `/replica/<instance>[?max_lag=BYTES]`, `/health/<instance>`.
//! Pure: a [`View`] (what the supervisor last knew of every instance of the group) and a
//! request path in, a status and one line of JSON out.
//!
//! Theory of operation. The supervisor publishes a fresh [`View`] after every event (its
//! machine builds it, see `daemon::machine`); the HTTP threads only read the last one, so a
//! request never waits on the supervisor loop. The view carries when each probe was
//! answered; [`decide`] refuses to judge on a probe older than [`View::max_age`] (a stuck
//! prober or supervisor then shows as 503, not as a stale 200).
//!
//! "Master" means the group's master by this daemon's view — what the daemons learned
//! from the instances' INFO, or in Sentinel mode what a majority of the sentinels name —
//! and not merely an instance whose INFO says `role:master`: an old master back from a
//! partition, or an instance someone ran `REPLICAOF NO ONE` on, answers 503.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::info::{IN_SYNC_SLACK_BYTES, Info};

/// What the supervisor knew of the group when it last published.
#[derive(Debug, Clone)]
pub struct View {
    pub cluster: String,
    /// Who the group's master is, by this daemon's view.
    pub master: GroupMaster,
    /// Every instance of the group (not the sentinels), in file order.
    pub members: Vec<Member>,
    /// The oldest a probe may be to decide on (`health_interval` plus the probe's own
    /// timeout, twice: a round may wait that long on an unreachable instance, and the
    /// answer as long again).
    pub max_age: Duration,
}

/// The group's master by this daemon's view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupMaster {
    /// This instance; `by` says whose word it is (for the JSON).
    Named { name: String, by: &'static str },
    /// No master can be named now, and why (Sentinel mode: the sentinels disagree).
    Unknown(String),
}

/// One instance of the group.
#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    pub bind: IpAddr,
    pub port: u16,
    /// The instance the group puts it under now (`None`: the group's master).
    pub upstream: Option<String>,
    /// Its last probe; `None` before the first.
    pub probe: Option<Probe>,
}

/// One INFO probe and when it was answered.
#[derive(Debug, Clone)]
pub struct Probe {
    pub at: Instant,
    /// Shared with the supervisor's own record (rebuilt after every event: no copies).
    pub result: Result<std::sync::Arc<Info>, String>,
}

/// An HTTP answer: status code and one line of JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub code: u16,
    pub body: String,
}

/// Which endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Master,
    Replica,
    Health,
}

impl Check {
    fn name(self) -> &'static str {
        match self {
            Check::Master => "master",
            Check::Replica => "replica",
            Check::Health => "health",
        }
    }
}

/// The HTTP answer to `req` (an endpoint path, see [`is_endpoint`]) at `now`: GET or HEAD
/// only.
pub fn respond(
    req: &crate::http::Request,
    view: Option<&View>,
    now: Instant,
) -> crate::http::Reply {
    if !matches!(req.method.as_str(), "GET" | "HEAD") {
        return crate::http::Reply::text("405 Method Not Allowed", "use GET");
    }
    let a = decide(view, &req.path, req.query.as_deref(), now);
    crate::http::Reply::json(a.code, &a.body)
}

/// Whether `path` (without the query) is one of the endpoints: the HTTP server routes
/// these here and everything else elsewhere.
pub fn is_endpoint(path: &str) -> bool {
    ["/master/", "/replica/", "/health/"]
        .iter()
        .any(|p| path.starts_with(p))
}

/// The answer to `GET path?query` at `now`; `view` is `None` until the supervisor first
/// published one. Only meaningful where [`is_endpoint`] holds (404 otherwise).
pub fn decide(view: Option<&View>, path: &str, query: Option<&str>, now: Instant) -> Answer {
    let (check, name) = match path.split_once('/').map(|(_, rest)| rest.split_once('/')) {
        Some(Some(("master", n))) => (Check::Master, n),
        Some(Some(("replica", n))) => (Check::Replica, n),
        Some(Some(("health", n))) => (Check::Health, n),
        _ => {
            return error(
                404,
                "not found: use /master/<instance>, /replica/<instance> or /health/<instance>",
            );
        }
    };
    let max_lag = match parse_query(check, query) {
        Ok(m) => m,
        Err(e) => return error(400, &e),
    };
    let Some(view) = view else {
        return error(
            503,
            "the daemon has not published its view of the group yet: try again",
        );
    };
    let Some(member) = view.members.iter().find(|m| m.name == name) else {
        let names: Vec<&str> = view.members.iter().map(|m| m.name.as_str()).collect();
        return error(
            404,
            &format!(
                "no instance `{name}` in cluster `{}`; instances: {}",
                view.cluster,
                names.join(", ")
            ),
        );
    };
    let judged = Judged::new(view, member, now);
    let verdict = match check {
        Check::Health => judged.health(),
        Check::Master => judged.master(),
        Check::Replica => judged.replica(max_lag),
    };
    let (ok, reason, lag) = match verdict {
        Ok((reason, lag)) => (true, reason, lag),
        Err(reason) => (false, reason, judged.lag().ok()),
    };
    let master = match &view.master {
        GroupMaster::Named { name, .. } => Some(name.as_str()),
        GroupMaster::Unknown(_) => None,
    };
    let mut body = json!({
        "instance": name,
        "check": check.name(),
        "ok": ok,
        "reason": reason,
        "role": judged.info().and_then(Info::role),
        "group_master": master,
        "probe_age_ms": judged.age.map(|a| a.as_millis() as u64),
    });
    if check == Check::Replica {
        body["lag_bytes"] = json!(lag);
    }
    Answer {
        code: if ok { 200 } else { 503 },
        body: body.to_string(),
    }
}

fn error(code: u16, message: &str) -> Answer {
    Answer {
        code,
        body: json!({ "ok": false, "reason": message }).to_string(),
    }
}

/// `max_lag=BYTES` on `/replica`; nothing else is understood anywhere.
fn parse_query(check: Check, query: Option<&str>) -> Result<Option<i64>, String> {
    let mut max_lag = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match (check, key) {
            (Check::Replica, "max_lag") => {
                let n: i64 = value
                    .parse()
                    .ok()
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| format!("max_lag=`{value}` is not a number of bytes"))?;
                max_lag = Some(n);
            }
            _ => {
                return Err(format!(
                    "unknown parameter `{key}` (only /replica takes one: max_lag=BYTES)"
                ));
            }
        }
    }
    Ok(max_lag)
}

/// One instance judged on the view.
struct Judged<'a> {
    view: &'a View,
    member: &'a Member,
    now: Instant,
    /// How old its probe is, when there is one.
    age: Option<Duration>,
}

type Verdict = Result<(String, Option<i64>), String>;

impl<'a> Judged<'a> {
    fn new(view: &'a View, member: &'a Member, now: Instant) -> Self {
        let age = member
            .probe
            .as_ref()
            .map(|p| now.saturating_duration_since(p.at));
        Judged {
            view,
            member,
            now,
            age,
        }
    }

    /// Its INFO, whether fresh or not (for the JSON).
    fn info(&self) -> Option<&'a Info> {
        self.member.probe.as_ref()?.result.as_deref().ok()
    }

    /// Its INFO when fresh enough to decide on, or why not.
    fn fresh(&self) -> Result<&'a Info, String> {
        fresh(self.view, self.member, self.now)
    }

    fn health(&self) -> Verdict {
        let info = self.fresh()?;
        if info.loading() {
            return Err("loading its data set: not answering commands yet".into());
        }
        Ok(("runs and answers".into(), None))
    }

    fn master(&self) -> Verdict {
        let name = &self.member.name;
        if self.view.members.iter().any(|m| m.probe.is_none()) {
            return Err(
                "this daemon has not probed every instance of the group yet: no verdict".into(),
            );
        }
        let info = self.fresh()?;
        match info.role() {
            Some("master") => {}
            Some(_) => {
                return Err(match self.upstream_by_info(info) {
                    Some(up) => format!("a replica (of `{up}`)"),
                    None => "a replica".to_owned(),
                });
            }
            None => return Err("its INFO names no role".into()),
        }
        if info.loading() {
            return Err("loading its data set".into());
        }
        if let Some(state) = info.get("master_failover_state")
            && state != "no-failover"
        {
            return Err(format!(
                "a failover is under way ({state}): writes are paused and will resume on \
                 the new master"
            ));
        }
        let group_master = match &self.view.master {
            GroupMaster::Named { name, .. } => name,
            GroupMaster::Unknown(why) => return Err(why.clone()),
        };
        if group_master != name {
            return Err(format!(
                "says role:master, but the group's master is `{group_master}` (by this \
                 daemon's view): it is not where the group writes"
            ));
        }
        let mine = self.followers(name);
        if let Some(rival) = self.view.members.iter().find(|m| {
            m.name != *name
                && fresh(self.view, m, self.now).is_ok_and(|i| i.role() == Some("master"))
                && self.followers(&m.name) > mine
        }) {
            return Err(format!(
                "`{}` also says role:master and more instances replicate from it: no verdict \
                 until this daemon settles which is the group's",
                rival.name
            ));
        }
        let by = match &self.view.master {
            GroupMaster::Named { by, .. } => *by,
            GroupMaster::Unknown(_) => "",
        };
        Ok((format!("the group's master ({by}); takes writes"), None))
    }

    fn replica(&self, max_lag: Option<i64>) -> Verdict {
        let info = self.fresh()?;
        if info.role() != Some("replica") {
            return Err(match info.role() {
                Some(role) => format!("not a replica: role:{role}"),
                None => "its INFO names no role".to_owned(),
            });
        }
        if info.loading() {
            return Err("loading its data set".into());
        }
        if info.master_link_up() != Some(true) {
            return Err("its link to its master is down".into());
        }
        if info.sync_in_progress() {
            return Err("a full sync is under way".into());
        }
        let Some(actual) = self.upstream_by_info(info) else {
            return Err(format!(
                "replicates from {}:{}, which is no instance of the group",
                info.get("master_host").unwrap_or("?"),
                info.get("master_port").unwrap_or("?")
            ));
        };
        match &self.member.upstream {
            Some(want) if *want == actual => {}
            Some(want) => {
                return Err(format!(
                    "replicates from `{actual}`, but the group puts it under `{want}`"
                ));
            }
            None => {
                return Err(format!(
                    "replicates from `{actual}`, but it is the group's master by this \
                     daemon's view"
                ));
            }
        }
        let lag = self.lag()?;
        let limit = max_lag.unwrap_or(IN_SYNC_SLACK_BYTES);
        if lag > limit {
            return Err(format!(
                "{lag} bytes behind `{actual}` (at most {limit} {})",
                if max_lag.is_some() {
                    "asked"
                } else {
                    "count as in sync"
                }
            ));
        }
        Ok((format!("online and in sync with `{actual}`"), Some(lag)))
    }

    /// Bytes behind its upstream: the upstream's offset less its own, from their last
    /// probes (as `status` shows LAG), when its upstream lists it online.
    fn lag(&self) -> Result<i64, String> {
        let info = self.fresh()?;
        let up_name = self
            .upstream_by_info(info)
            .ok_or("its upstream is unknown")?;
        let up = self
            .view
            .members
            .iter()
            .find(|m| m.name == up_name)
            .ok_or("its upstream is unknown")?;
        let up_info = fresh(self.view, up, self.now)
            .map_err(|e| format!("its upstream `{up_name}` cannot be judged: {e}"))?;
        let listed = up_info
            .replica(self.member.bind, self.member.port)
            .is_some_and(crate::info::ReplicaLine::is_online);
        if !listed {
            return Err(format!("`{up_name}` does not list it as an online replica"));
        }
        match (info.repl_offset(), up_info.repl_offset()) {
            (Some(mine), Some(theirs)) => Ok((theirs - mine).max(0)),
            _ => Err("no replication offsets in INFO".into()),
        }
    }

    /// The member its INFO says it replicates from.
    fn upstream_by_info(&self, info: &Info) -> Option<&'a str> {
        upstream_by_info(self.view, info)
    }

    /// How many instances (fresh probes) replicate directly from `name`.
    fn followers(&self, name: &str) -> usize {
        self.view
            .members
            .iter()
            .filter(|m| {
                fresh(self.view, m, self.now)
                    .is_ok_and(|i| upstream_by_info(self.view, i) == Some(name))
            })
            .count()
    }
}

/// `member`'s INFO when its probe is fresh and answered, or why not.
fn fresh<'a>(view: &View, member: &'a Member, now: Instant) -> Result<&'a Info, String> {
    let Some(probe) = &member.probe else {
        return Err("not probed yet".into());
    };
    let age = now.saturating_duration_since(probe.at);
    if age > view.max_age {
        return Err(format!(
            "its last probe is {} ms old (more than {} ms): this daemon's view is stale",
            age.as_millis(),
            view.max_age.as_millis()
        ));
    }
    probe
        .result
        .as_deref()
        .map_err(|e| format!("does not answer: {e}"))
}

/// The member a replica's INFO names as its master (`master_host`, `master_port`).
fn upstream_by_info<'a>(view: &'a View, info: &Info) -> Option<&'a str> {
    if info.role() != Some("replica") {
        return None;
    }
    let host: IpAddr = info.get("master_host")?.parse().ok()?;
    let port: u16 = info.get("master_port")?.parse().ok()?;
    view.members
        .iter()
        .find(|m| m.bind == host && m.port == port)
        .map(|m| m.name.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &str = "127.0.0.1";

    fn master_info(offset: i64, replicas: &[(u16, i64)]) -> String {
        let mut s = format!(
            "role:master\nmaster_repl_offset:{offset}\nconnected_slaves:{}\n",
            replicas.len()
        );
        for (i, (port, off)) in replicas.iter().enumerate() {
            s.push_str(&format!(
                "slave{i}:ip={M},port={port},state=online,offset={off},lag=0\n"
            ));
        }
        s.push_str("master_failover_state:no-failover\n");
        s
    }

    fn replica_info(of_port: u16, offset: i64) -> String {
        format!(
            "role:slave\nmaster_host:{M}\nmaster_port:{of_port}\nmaster_link_status:up\n\
             master_sync_in_progress:0\nslave_repl_offset:{offset}\nmaster_repl_offset:{offset}\n"
        )
    }

    fn member(name: &str, port: u16, upstream: Option<&str>, info: &str, at: Instant) -> Member {
        Member {
            name: name.into(),
            bind: M.parse().unwrap(),
            port,
            upstream: upstream.map(str::to_owned),
            probe: Some(Probe {
                at,
                result: Ok(std::sync::Arc::new(Info::parse(info))),
            }),
        }
    }

    /// m (port 1) master of r1 (2) and r2 (3), all probed at `at`.
    fn group(at: Instant) -> View {
        View {
            cluster: "c".into(),
            master: GroupMaster::Named {
                name: "m".into(),
                by: "daemons",
            },
            members: vec![
                member("m", 1, None, &master_info(1000, &[(2, 1000), (3, 900)]), at),
                member("r1", 2, Some("m"), &replica_info(1, 1000), at),
                member("r2", 3, Some("m"), &replica_info(1, 900), at),
            ],
            max_age: Duration::from_secs(3),
        }
    }

    fn ask(view: &View, path: &str, now: Instant) -> (u16, serde_json::Value) {
        let (path, query) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
        let a = decide(Some(view), path, query, now);
        assert!(!a.body.contains('\n'), "one line: {}", a.body);
        (a.code, serde_json::from_str(&a.body).unwrap())
    }

    fn reason(v: &serde_json::Value) -> &str {
        v["reason"].as_str().unwrap()
    }

    #[test]
    fn the_groups_master_is_200_and_replicas_are_503_on_master() {
        let now = Instant::now();
        let v = group(now);
        let (code, body) = ask(&v, "/master/m", now);
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["ok"], true);
        assert_eq!(body["role"], "master");
        assert_eq!(body["group_master"], "m");
        let (code, body) = ask(&v, "/master/r1", now);
        assert_eq!(code, 503);
        assert_eq!(reason(&body), "a replica (of `m`)");
    }

    #[test]
    fn replicas_in_sync_are_200_and_max_lag_is_honoured() {
        let now = Instant::now();
        let v = group(now);
        let (code, body) = ask(&v, "/replica/r1", now);
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["lag_bytes"], 0);
        let (code, body) = ask(&v, "/replica/r2", now);
        assert_eq!(code, 200, "within the in-sync slack: {body}");
        assert_eq!(body["lag_bytes"], 100);
        let (code, body) = ask(&v, "/replica/r2?max_lag=100", now);
        assert_eq!(code, 200, "{body}");
        let (code, body) = ask(&v, "/replica/r2?max_lag=99", now);
        assert_eq!(code, 503);
        assert_eq!(reason(&body), "100 bytes behind `m` (at most 99 asked)");
        assert_eq!(body["lag_bytes"], 100);
        let (code, body) = ask(&v, "/replica/m", now);
        assert_eq!(code, 503);
        assert_eq!(reason(&body), "not a replica: role:master");
    }

    #[test]
    fn a_replica_far_behind_is_not_in_sync() {
        let now = Instant::now();
        let mut v = group(now);
        v.members[0] = member(
            "m",
            1,
            None,
            &master_info(5 << 20, &[(2, 1000), (3, 900)]),
            now,
        );
        let (code, body) = ask(&v, "/replica/r1", now);
        assert_eq!(code, 503);
        assert!(reason(&body).contains("count as in sync"), "{body}");
    }

    #[test]
    fn bad_requests_and_unknown_instances() {
        let now = Instant::now();
        let v = group(now);
        let (code, body) = ask(&v, "/master/nope", now);
        assert_eq!(code, 404);
        assert_eq!(
            reason(&body),
            "no instance `nope` in cluster `c`; instances: m, r1, r2"
        );
        assert_eq!(ask(&v, "/replica/r1?max_lag=x", now).0, 400);
        assert_eq!(ask(&v, "/replica/r1?max_lag=-1", now).0, 400);
        assert_eq!(ask(&v, "/master/m?max_lag=1", now).0, 400);
        assert_eq!(ask(&v, "/replica/r1?maxlag=1", now).0, 400);
        assert_eq!(ask(&v, "/primary/m", now).0, 404);
        assert_eq!(ask(&v, "/master/", now).0, 404);
        let a = decide(None, "/master/m", None, now);
        assert_eq!(a.code, 503);
        assert!(is_endpoint("/health/x") && !is_endpoint("/metrics"));
    }

    #[test]
    fn http_requests_are_answered_with_json_and_only_get_or_head() {
        let now = Instant::now();
        let v = group(now);
        let req = |head: &str| {
            crate::http::parse_head(format!("{head}\r\n\r\n").as_bytes())
                .unwrap()
                .unwrap()
        };
        let r = respond(&req("GET /replica/r2?max_lag=99 HTTP/1.1"), Some(&v), now);
        assert_eq!(r.status, "503 Service Unavailable");
        assert_eq!(r.content_type, "application/json");
        assert!(
            r.body.ends_with("}\n") && r.body.matches('\n').count() == 1,
            "{}",
            r.body
        );
        let r = respond(&req("HEAD /master/m HTTP/1.1"), Some(&v), now);
        assert_eq!(r.status, "200 OK");
        let r = respond(&req("POST /master/m HTTP/1.1"), Some(&v), now);
        assert_eq!(r.status, "405 Method Not Allowed");
        let r = respond(&req("GET /health/x HTTP/1.1"), Some(&v), now);
        assert_eq!(r.status, "404 Not Found");
    }

    #[test]
    fn health_is_200_while_it_answers() {
        let now = Instant::now();
        let mut v = group(now);
        assert_eq!(ask(&v, "/health/r2", now).0, 200);
        v.members[2].probe = Some(Probe {
            at: now,
            result: Err("connection refused".into()),
        });
        let (code, body) = ask(&v, "/health/r2", now);
        assert_eq!(code, 503);
        assert_eq!(reason(&body), "does not answer: connection refused");
        v.members[2] = member("r2", 3, Some("m"), "role:slave\nloading:1\n", now);
        assert_eq!(ask(&v, "/health/r2", now).0, 503);
    }

    #[test]
    fn a_stale_probe_is_never_a_200() {
        let at = Instant::now();
        let v = group(at);
        let later = at + Duration::from_millis(3001);
        for path in ["/master/m", "/replica/r1", "/health/r1"] {
            let (code, body) = ask(&v, path, later);
            assert_eq!(code, 503, "{path}");
            assert!(reason(&body).contains("stale"), "{body}");
            assert_eq!(body["probe_age_ms"], 3001);
        }
        // Exactly max_age old still counts.
        assert_eq!(ask(&v, "/master/m", at + Duration::from_secs(3)).0, 200);
    }

    #[test]
    fn an_old_master_that_says_role_master_is_503() {
        // After `promote r1`: r1 is the group's master and r2 follows it; m came back
        // from a partition and says role:master with no replicas.
        let now = Instant::now();
        let mut v = group(now);
        v.master = GroupMaster::Named {
            name: "r1".into(),
            by: "daemons",
        };
        v.members[0] = member("m", 1, Some("r1"), &master_info(900, &[]), now);
        v.members[1] = member("r1", 2, None, &master_info(2000, &[(3, 2000)]), now);
        v.members[2] = member("r2", 3, Some("r1"), &replica_info(2, 2000), now);
        let (code, body) = ask(&v, "/master/m", now);
        assert_eq!(code, 503);
        assert_eq!(body["role"], "master");
        assert!(
            reason(&body).starts_with("says role:master, but the group's master is `r1`"),
            "{body}"
        );
        assert_eq!(ask(&v, "/master/r1", now).0, 200);
        assert_eq!(ask(&v, "/replica/r2", now).0, 200);
        // The old master is not a replica either, nor one in the group's place.
        assert_eq!(ask(&v, "/replica/m", now).0, 503);
    }

    #[test]
    fn a_master_is_503_while_the_daemon_has_not_caught_up_with_a_rival() {
        // The daemon still names m, but r1 says master and both others follow it.
        let now = Instant::now();
        let mut v = group(now);
        v.members[0] = member("m", 1, None, &master_info(900, &[]), now);
        v.members[1] = member("r1", 2, Some("m"), &master_info(2000, &[(3, 2000)]), now);
        v.members[2] = member("r2", 3, Some("m"), &replica_info(2, 2000), now);
        let (code, body) = ask(&v, "/master/m", now);
        assert_eq!(code, 503);
        assert!(
            reason(&body).contains("`r1` also says role:master"),
            "{body}"
        );
        // And r1 is not the group's master yet by this view: 503 too, until it learns.
        assert_eq!(ask(&v, "/master/r1", now).0, 503);
        // r2 replicates from r1 although the group puts it under m.
        let (code, body) = ask(&v, "/replica/r2", now);
        assert_eq!(code, 503);
        assert_eq!(
            reason(&body),
            "replicates from `r1`, but the group puts it under `m`"
        );
    }

    #[test]
    fn a_master_in_a_failover_or_loading_or_unknown_to_the_sentinels_is_503() {
        let now = Instant::now();
        let mut v = group(now);
        let paused =
            master_info(1000, &[(2, 1000), (3, 900)]).replace("no-failover", "waiting-for-sync");
        v.members[0] = member("m", 1, None, &paused, now);
        let (code, body) = ask(&v, "/master/m", now);
        assert_eq!(code, 503);
        assert!(reason(&body).contains("failover is under way"), "{body}");

        let mut v = group(now);
        v.members[0] = member("m", 1, None, "role:master\nloading:1\n", now);
        assert_eq!(ask(&v, "/master/m", now).0, 503);

        let mut v = group(now);
        v.master = GroupMaster::Unknown("the sentinels do not agree on a master".into());
        let (code, body) = ask(&v, "/master/m", now);
        assert_eq!(code, 503);
        assert_eq!(reason(&body), "the sentinels do not agree on a master");
        assert_eq!(body["group_master"], serde_json::Value::Null);
    }

    #[test]
    fn no_master_verdict_before_every_instance_was_probed() {
        let now = Instant::now();
        let mut v = group(now);
        v.members[2].probe = None;
        let (code, body) = ask(&v, "/master/m", now);
        assert_eq!(code, 503);
        assert!(
            reason(&body).contains("not probed every instance"),
            "{body}"
        );
        // An unreachable one does not hold the verdict back.
        v.members[2].probe = Some(Probe {
            at: now,
            result: Err("timed out".into()),
        });
        assert_eq!(ask(&v, "/master/m", now).0, 200);
    }

    #[test]
    fn replicas_with_a_down_link_a_sync_or_a_stranger_upstream_are_503() {
        let now = Instant::now();
        let cases = [
            (
                replica_info(1, 1000).replace("link_status:up", "link_status:down"),
                "its link to its master is down",
            ),
            (
                replica_info(1, 1000).replace("sync_in_progress:0", "sync_in_progress:1"),
                "a full sync is under way",
            ),
            (
                replica_info(9, 1000),
                "replicates from 127.0.0.1:9, which is no instance of the group",
            ),
        ];
        for (info, want) in cases {
            let mut v = group(now);
            v.members[1] = member("r1", 2, Some("m"), &info, now);
            let (code, body) = ask(&v, "/replica/r1", now);
            assert_eq!(code, 503, "{info}");
            assert_eq!(reason(&body), want);
        }
        // Its upstream does not list it (a new connection not yet online).
        let mut v = group(now);
        v.members[0] = member("m", 1, None, &master_info(1000, &[(3, 900)]), now);
        let (code, body) = ask(&v, "/replica/r1", now);
        assert_eq!(code, 503);
        assert_eq!(reason(&body), "`m` does not list it as an online replica");
        // Its upstream's probe is stale: no lag, no verdict.
        let mut v = group(now);
        v.members[0].probe.as_mut().unwrap().at = now - Duration::from_secs(10);
        let (code, body) = ask(&v, "/replica/r1", now);
        assert_eq!(code, 503);
        assert!(
            reason(&body).starts_with("its upstream `m` cannot be judged"),
            "{body}"
        );
    }
}
