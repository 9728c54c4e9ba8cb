//! Maintenance pause (`redisrepd pause` / `resume`): until it ends, the daemon does
//! nothing by itself — no restart after a crash, no re-point, no repair, no catch-up — and
//! its sentinels do not fail over; what an operator types still runs. The pause ends at its
//! deadline or on `resume`, and is kept across daemon restarts (`Effect::SavePause`).

use std::time::{Duration, Instant};

use tracing::info;

use super::{Effect, Kind, Machine, RequestId, State};
use crate::control::Response;
use crate::render::sentinel::SentinelSet;

/// What a paused group's sentinels wait before they call a master down: a year, so that
/// none is ever subjectively down while paused (Sentinel takes any positive number; it
/// only shortens its PING period to 1 s, which this does not change).
pub(super) const PAUSED_DOWN_AFTER_MS: u64 = 365 * 24 * 3600 * 1000;

/// The maintenance pause, when one was asked for.
#[derive(Default)]
pub(super) struct Pause {
    /// Until then nothing happens by itself; kept past its end until the next step
    /// notices (and tells the sentinels).
    pub(super) until: Option<Instant>,
}

impl Pause {
    /// Whether it holds at `now`.
    pub(super) fn active(&self, now: Instant) -> bool {
        self.until.is_some_and(|until| now < until)
    }

    /// How long it still holds (`None`: not paused).
    pub(super) fn remaining(&self, now: Instant) -> Option<Duration> {
        self.until
            .filter(|until| now < *until)
            .map(|until| until - now)
    }

    /// Whether it ran out by `now` (and was not ended yet).
    pub(super) fn expired(&self, now: Instant) -> bool {
        self.until.is_some_and(|until| now >= until)
    }
}

impl Machine {
    /// Whether the group is paused at `now`.
    pub(super) fn paused(&self, now: Instant) -> bool {
        self.pause.active(now)
    }

    /// How long the pause still holds (`None`: not paused), for `status` and the file.
    pub fn paused_for(&self, now: Instant) -> Option<Duration> {
        self.pause.remaining(now)
    }

    /// Takes a pause an earlier daemon kept, ending at `until`, before the first input:
    /// the instances that do not run (not adopted) are not started until the pause ends,
    /// as a crash during the pause would not be restarted.
    pub fn restore_pause(&mut self, until: Instant) {
        self.pause.until = Some(until);
        for slot in self.slots.values_mut() {
            slot.held_by_pause = slot.state.kind() == Kind::Waiting;
        }
    }

    /// Whether a waiting instance is held by the pause now: it crashed, or was not running
    /// when this daemon started into the pause.
    pub(super) fn held(&self, name: &str, now: Instant) -> bool {
        self.paused(now)
            && self.slots.get(name).is_some_and(|s| {
                s.held_by_pause
                    || matches!(
                        s.state,
                        State::Waiting {
                            after_crash: true,
                            ..
                        }
                    )
            })
    }

    /// `pause --for`: holds every automatic action until `now + length` (a pause under
    /// way gets the new deadline).
    pub(super) fn on_pause(
        &mut self,
        id: RequestId,
        length: Duration,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) {
        let was = self.paused(now);
        self.pause.until = Some(now + length);
        fx.push(Effect::SavePause {
            remaining: Some(length),
        });
        let span = super::human(length);
        info!(
            "paused for {span}: no automatic restart, re-point, repair or failover until `redisrepd resume`"
        );
        let mut lines = vec![format!(
            "{}: paused for {span}{}",
            self.host,
            if was {
                " (the pause under way got this deadline)"
            } else {
                ""
            }
        )];
        lines.extend(self.hold_sentinels(true, fx));
        fx.push(Effect::Reply {
            id,
            response: Response::Done {
                ok: true,
                lines,
                failed: Vec::new(),
            },
        });
    }

    /// `resume`, or the deadline: everything automatic runs again; instances that crashed
    /// meanwhile start now.
    pub(super) fn on_resume(&mut self, id: Option<RequestId>, now: Instant, fx: &mut Vec<Effect>) {
        let was = self.paused(now) || self.pause.until.is_some();
        self.pause.until = None;
        fx.push(Effect::SavePause { remaining: None });
        let mut lines = vec![format!(
            "{}: {}",
            self.host,
            if was { "resumed" } else { "was not paused" }
        )];
        if was {
            info!("resumed: automatic restarts, re-points, repairs and failovers run again");
            lines.extend(self.hold_sentinels(false, fx));
            for (name, slot) in &mut self.slots {
                let crashed = matches!(
                    slot.state,
                    State::Waiting {
                        after_crash: true,
                        ..
                    }
                );
                if crashed || std::mem::take(&mut slot.held_by_pause) {
                    lines.push(format!("{name}: held while paused, starting"));
                }
            }
        }
        if let Some(id) = id {
            fx.push(Effect::Reply {
                id,
                response: Response::Done {
                    ok: true,
                    lines,
                    failed: Vec::new(),
                },
            });
        }
    }

    /// Ends a pause whose deadline has passed (called on every step).
    pub(super) fn expire_pause(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        if self.pause.expired(now) {
            info!("the pause reached its deadline");
            self.on_resume(None, now, fx);
        }
    }

    /// A local sentinel that just came up while the group is paused holds failovers too
    /// (it rendered the TOML's `down_after`).
    pub(super) fn hold_new_sentinel(&self, name: &str, now: Instant, fx: &mut Vec<Effect>) {
        if self.paused(now) {
            fx.extend(self.sentinel_sets(std::slice::from_ref(&name.to_owned()), true));
        }
    }

    /// Sets `down-after-milliseconds` on every running local sentinel: a year while paused,
    /// the TOML's value after. Returns a line per sentinel for the verb's answer.
    fn hold_sentinels(&self, paused: bool, fx: &mut Vec<Effect>) -> Vec<String> {
        let running: Vec<String> = self
            .local_sentinels()
            .into_iter()
            .filter(|n| {
                self.slots
                    .get(n)
                    .is_some_and(|s| s.state.kind() == Kind::Running)
            })
            .collect();
        let sets = self.sentinel_sets(&running, paused);
        let lines = running
            .iter()
            .map(|n| {
                if paused {
                    format!("{n}: sentinel holds failovers (down-after-milliseconds {PAUSED_DOWN_AFTER_MS})")
                } else {
                    format!("{n}: sentinel fails over again (down-after-milliseconds as configured)")
                }
            })
            .collect();
        fx.extend(sets);
        lines
    }

    fn sentinel_sets(&self, names: &[String], paused: bool) -> Vec<Effect> {
        let Some(s) = &self.group.sentinel else {
            return Vec::new();
        };
        let value = if paused {
            PAUSED_DOWN_AFTER_MS.to_string()
        } else {
            s.down_after.as_millis().to_string()
        };
        names
            .iter()
            .filter_map(|n| {
                let slot = self.slots.get(n)?;
                Some(Effect::SentinelReconfigure {
                    name: n.clone(),
                    endpoint: slot.endpoint.clone(),
                    sets: vec![SentinelSet {
                        option: "down-after-milliseconds",
                        value: value.clone(),
                    }],
                    password: None,
                })
            })
            .collect()
    }
}
