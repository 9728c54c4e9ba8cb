//! The daemon's own life as the machine sees it: told to stop, exited, READY sent, the
//! last STATUS line sent to systemd.

/// Where the daemon itself is.
#[derive(Default)]
pub(super) struct Life {
    /// SIGTERM (or SIGINT) came: everything stops, nothing starts.
    pub(super) shutting_down: bool,
    /// [`super::Effect::Exit`] was given: no input is handled any more.
    pub(super) exited: bool,
    /// READY=1 went to systemd (once).
    pub(super) ready_sent: bool,
    /// The last STATUS= line sent, so that only a change is sent.
    pub(super) last_status_line: String,
}

impl Life {
    /// Takes `line` as the STATUS= line; true when it differs from the last one sent.
    pub(super) fn status_line_changed(&mut self, line: &str) -> bool {
        if line == self.last_status_line {
            return false;
        }
        line.clone_into(&mut self.last_status_line);
        true
    }
}
