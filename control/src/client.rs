//! A blocking client for xpgmd's socket (used by xpgmctl and tests).

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::{Map, Value};

/// A connection to xpgmd.
#[derive(Debug)]
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next_id: u64,
    /// Events that arrived while waiting for a reply, returned first by
    /// [`Client::read_message`].
    pending: std::collections::VecDeque<Value>,
    /// Bytes of a line [`Client::try_read_message`] has read but not yet completed.
    partial: Vec<u8>,
}

/// Longest line [`Client::try_read_message`] accepts (xpgmd's lines are far shorter).
const MAX_LINE: usize = 1 << 20;

impl Client {
    /// Connects to the socket at `path`.
    pub fn connect(path: &Path) -> io::Result<Self> {
        let s = UnixStream::connect(path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("connecting to xpgmd at {}: {e}", path.display()),
            )
        })?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        Self::from_stream(s)
    }

    fn from_stream(s: UnixStream) -> io::Result<Self> {
        let writer = s.try_clone()?;
        Ok(Self {
            reader: BufReader::new(s),
            writer,
            next_id: 1,
            pending: std::collections::VecDeque::new(),
            partial: Vec::new(),
        })
    }

    /// Sets the read timeout (`None` blocks forever, for event streams).
    pub fn set_read_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        self.writer.set_read_timeout(d)
    }

    /// Sends `op` with `args`, returns the reply object (ok or error).
    pub fn request(&mut self, op: &str, args: Map<String, Value>) -> io::Result<Value> {
        self.request_with_fds(op, args, &[])
    }

    /// Like [`Client::request`], passing `fds` with the request (SCM_RIGHTS),
    /// as `register` expects for AF_XDP sockets.
    pub fn request_with_fds(
        &mut self,
        op: &str,
        args: Map<String, Value>,
        fds: &[std::os::fd::BorrowedFd<'_>],
    ) -> io::Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let mut m = args;
        m.insert("id".into(), Value::from(id));
        m.insert("op".into(), Value::from(op));
        let mut line = serde_json::to_vec(&Value::Object(m)).map_err(io::Error::other)?;
        line.push(b'\n');
        if fds.is_empty() {
            self.writer.write_all(&line)?;
        } else {
            use std::os::fd::AsFd;
            // The descriptors ride on the first byte; the rest follows.
            let n = crate::sys::send_with_fds(self.writer.as_fd(), &line, fds)?;
            self.writer.write_all(line.get(n..).unwrap_or(&[]))?;
        }
        loop {
            let v = self.read_line()?;
            // Keep pushed events for read_message; a reply carries our id
            // (or null for connection-level errors).
            if v.get("event").is_some() {
                if self.pending.len() < 4096 {
                    self.pending.push_back(v);
                }
                continue;
            }
            match v.get("id") {
                Some(Value::Number(n)) if n.as_u64() == Some(id) => return Ok(v),
                Some(Value::Null) | None => return Ok(v),
                _ => continue,
            }
        }
    }

    /// Reads the next message: a buffered event first, else the next line
    /// (reply or event).
    pub fn read_message(&mut self) -> io::Result<Value> {
        if let Some(v) = self.pending.pop_front() {
            return Ok(v);
        }
        self.read_line()
    }

    /// Like [`Client::read_message`] without blocking: `Ok(None)` when no complete
    /// line has arrived yet (a partial one is kept for the next call). EOF is
    /// [`io::ErrorKind::UnexpectedEof`] ("xpgmd closed the connection"). Used by a
    /// data-plane session to watch its registration's connection for xpgmd going away
    /// or a `session_error`.
    pub fn try_read_message(&mut self) -> io::Result<Option<Value>> {
        if let Some(v) = self.pending.pop_front() {
            return Ok(Some(v));
        }
        self.writer.set_nonblocking(true)?;
        let r = self.reader.read_until(b'\n', &mut self.partial);
        let restore = self.writer.set_nonblocking(false);
        let complete = self.partial.last() == Some(&b'\n');
        match r {
            Ok(0) if self.partial.is_empty() => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "xpgmd closed the connection",
                ));
            }
            Ok(_) if complete => {}
            // EOF in the middle of a line.
            Ok(_) => {
                self.partial.clear();
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "xpgmd closed the connection in the middle of a message",
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                restore?;
                if self.partial.len() > MAX_LINE {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "xpgmd sent a line longer than 1 MiB",
                    ));
                }
                return Ok(None);
            }
            Err(e) => return Err(e),
        }
        restore?;
        let line = std::mem::take(&mut self.partial);
        serde_json::from_slice(&line)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    fn read_line(&mut self) -> io::Result<Value> {
        let mut s = String::new();
        let n = self.reader.read_line(&mut s)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "xpgmd closed the connection",
            ));
        }
        serde_json::from_str(&s).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// The underlying stream (for passing descriptors).
    pub fn stream(&self) -> &UnixStream {
        &self.writer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn try_read_message_never_blocks_keeps_partial_lines_and_reports_eof() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let mut c = Client::from_stream(a).unwrap();
        assert!(c.try_read_message().unwrap().is_none());
        b.write_all(br#"{"event":"session_error","#).unwrap();
        assert!(c.try_read_message().unwrap().is_none());
        b.write_all(b"\"session\":3}\n{\"x\":1}\n").unwrap();
        let v = c.try_read_message().unwrap().unwrap();
        assert_eq!(v["event"], "session_error");
        assert_eq!(v["session"], 3);
        assert_eq!(c.try_read_message().unwrap().unwrap()["x"], 1);
        assert!(c.try_read_message().unwrap().is_none());
        // The connection is blocking again for ordinary requests.
        assert!(c.writer.set_read_timeout(None).is_ok());
        b.write_all(b"{\"y\"").unwrap();
        drop(b);
        let e = c.try_read_message().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert!(e.to_string().contains("middle"), "{e}");
        let e = c.try_read_message().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(e.to_string(), "xpgmd closed the connection");
    }
}
