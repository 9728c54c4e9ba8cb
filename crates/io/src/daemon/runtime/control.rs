//! The daemon's callers: control requests taken in (backups and restores go to their
//! workers, the rest to the machine), their answers sent back, and systemd told.

use std::sync::mpsc::Sender;
use std::time::Instant;

use super::Runtime;
use crate::daemon::backup::Here;
use redisrepd_core::control::{Request, Response};
use redisrepd_core::machine::{Input, Kind, Notify, RequestId};
use redisrepd_core::status::HttpEndpoint;

impl Runtime {
    /// A control request: answered here when it is about backups, else handed to the
    /// machine, its answer sent to `reply` once the machine gives one.
    pub(super) fn request(&mut self, request: Request, reply: Sender<Response>, now: Instant) {
        // Backups and restores are file work in workers, not supervision: the machine
        // never sees them.
        let request = match request {
            Request::Backup { instance, to } => {
                let group = self.machine.group();
                return self.backups.manual(group, &self.host, &instance, to, reply);
            }
            Request::BackupStatus => {
                let status = self.backups.status();
                let _ = reply.send(Response::Backup { status });
                return;
            }
            Request::Restore { file, master } => {
                let stopped = |name: &str| {
                    !self.procs.contains_key(name)
                        && self
                            .machine
                            .state(name)
                            .is_none_or(|s| matches!(s.kind(), Kind::Stopped | Kind::Failed))
                };
                self.backups.restore(
                    self.machine.group(),
                    Here {
                        host: &self.host,
                        server: self.machine.server(),
                        run_as: self.run_as.clone(),
                    },
                    (file, master),
                    stopped,
                    reply,
                );
                return;
            }
            other => other,
        };
        let id = self.next_request;
        self.next_request += 1;
        self.replies.insert(id, reply);
        self.feed(Input::Request { id, request }, now);
    }

    /// Answers the request `id`; a `status` answer gets the HTTP listener's state and the
    /// certificates' ends, which only the runtime knows.
    pub(super) fn reply(&mut self, id: RequestId, mut response: Response) {
        if let Response::Status {
            tls_cert_expiry, ..
        } = &mut response
        {
            *tls_cert_expiry = self.cert_expiries();
        }
        if let (Response::Status { http, .. }, Some(state)) = (&mut response, &self.http)
            && let Ok(state) = state.lock()
        {
            *http = Some(HttpEndpoint {
                host: self.host.clone(),
                address: state.address.to_string(),
                error: state.error.clone(),
            });
        }
        self.send_reply(id, response);
    }

    /// Answers the request `id` with this host's history of changes of master.
    pub(super) fn reply_history(&mut self, id: RequestId) {
        let path = self.machine.group().history_path(&self.host);
        let response = match crate::daemon::recorder::read(&path) {
            Ok(changes) => Response::History {
                host: self.host.clone(),
                changes,
            },
            Err(message) => Response::Error { message },
        };
        self.send_reply(id, response);
    }

    fn send_reply(&mut self, id: RequestId, response: Response) {
        if let Some(reply) = self.replies.remove(&id) {
            let _ = reply.send(response);
        }
    }

    /// Tells systemd, when it listens.
    pub(super) fn notify(&self, what: &Notify) {
        if self.notify {
            notify(what);
        }
    }
}

fn notify(what: &Notify) {
    use sd_notify::NotifyState;
    let _ = match what {
        Notify::Ready => sd_notify::notify(&[NotifyState::Ready]),
        Notify::Stopping => sd_notify::notify(&[NotifyState::Stopping]),
        Notify::Status(line) => sd_notify::notify(&[NotifyState::Status(line)]),
        Notify::Reloading => {
            // MONOTONIC_USEC lets systemd tell this reload from an earlier one.
            let mut states = vec![NotifyState::Reloading];
            states.extend(NotifyState::monotonic_usec_now().ok());
            sd_notify::notify(&states)
        }
    };
}
