//! DNS messages on a TCP stream: each is preceded by its length in two bytes (RFC 1035
//! 4.2.2). [`Input`] collects the bytes read until messages are complete; [`Output`]
//! queues the responses not yet written.
//!
//! Both are bounded by their users: a connection reads only while its input holds no
//! complete message (so at most one message of 65,535 bytes and one read beyond it), and
//! queues responses only while its output holds less than [`OUTPUT_HIGH`] bytes.

/// Bytes asked of the socket per read, at least.
const READ_CHUNK: usize = 4096;
/// A connection stops queueing responses while this many bytes wait to be written.
pub const OUTPUT_HIGH: usize = 64 * 1024;
/// Buffers larger than this are given back once emptied (after a large transfer message).
const KEEP_CAPACITY: usize = 16 * 1024;

/// Bytes read and not yet taken as messages.
#[derive(Default)]
pub struct Input {
    buffer: Vec<u8>,
    /// Bytes of `buffer` already taken.
    taken: usize,
}

impl Input {
    /// The next complete message, if one has arrived; it is taken.
    pub fn next_message(&mut self) -> Option<&[u8]> {
        let len = self.complete()?;
        let start = self.taken + 2;
        self.taken = start + len;
        Some(&self.buffer[start..start + len])
    }

    /// Whether a complete message waits to be taken.
    pub fn has_message(&self) -> bool {
        self.complete().is_some()
    }

    /// Whether part of a message has arrived (and not all of it).
    pub fn is_partial(&self) -> bool {
        self.taken < self.buffer.len() && !self.has_message()
    }

    /// The buffer to read into, with room for the rest of the message under way (or a
    /// chunk); bytes already taken are dropped first.
    pub fn buffer_for_read(&mut self) -> &mut Vec<u8> {
        self.buffer.drain(..self.taken);
        self.taken = 0;
        if self.buffer.is_empty() && self.buffer.capacity() > KEEP_CAPACITY {
            self.buffer = Vec::new();
        }
        let rest = match self.buffer.get(..2) {
            Some(&[high, low]) => {
                (2 + usize::from(u16::from_be_bytes([high, low]))).saturating_sub(self.buffer.len())
            }
            _ => 0,
        };
        self.buffer.reserve(rest.max(READ_CHUNK));
        &mut self.buffer
    }

    /// The length of the complete message at the front, if there is one.
    fn complete(&self) -> Option<usize> {
        let pending = &self.buffer[self.taken..];
        let len = usize::from(u16::from_be_bytes([*pending.first()?, *pending.get(1)?]));
        (pending.len() >= 2 + len).then_some(len)
    }
}

/// Responses waiting to be written, each with its length in front.
#[derive(Default)]
pub struct Output {
    buffer: Vec<u8>,
    /// Bytes of `buffer` already written.
    written: usize,
}

impl Output {
    /// Queues `message`; one longer than a TCP message can be (never built) is dropped.
    pub fn push(&mut self, message: &[u8]) {
        let Ok(len) = u16::try_from(message.len()) else {
            tracing::error!(
                len = message.len(),
                "a DNS response too long for TCP was dropped"
            );
            return;
        };
        if self.written >= OUTPUT_HIGH {
            self.buffer.drain(..self.written);
            self.written = 0;
        }
        self.buffer.extend_from_slice(&len.to_be_bytes());
        self.buffer.extend_from_slice(message);
    }

    /// The bytes still to write.
    pub fn unsent(&self) -> &[u8] {
        &self.buffer[self.written..]
    }

    /// How many bytes wait to be written.
    pub fn len(&self) -> usize {
        self.buffer.len() - self.written
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Marks `n` more bytes written.
    pub fn advance(&mut self, n: usize) {
        self.written = (self.written + n).min(self.buffer.len());
        if self.written == self.buffer.len() {
            self.buffer.clear();
            self.written = 0;
            if self.buffer.capacity() > KEEP_CAPACITY {
                self.buffer = Vec::new();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(messages: &[&[u8]]) -> Vec<u8> {
        let mut out = Output::default();
        for message in messages {
            out.push(message);
        }
        out.unsent().to_vec()
    }

    #[test]
    fn messages_come_out_whole_however_the_bytes_arrive() {
        let wire = framed(&[b"first", b"", b"third message"]);
        for chunk in 1..wire.len() {
            let mut input = Input::default();
            let mut got: Vec<Vec<u8>> = Vec::new();
            for piece in wire.chunks(chunk) {
                assert!(!input.has_message());
                input.buffer_for_read().extend_from_slice(piece);
                while let Some(message) = input.next_message() {
                    got.push(message.to_vec());
                }
            }
            assert_eq!(got, [&b"first"[..], b"", b"third message"]);
            assert!(!input.is_partial());
        }
    }

    #[test]
    fn room_is_made_for_the_whole_message_under_way() {
        let mut input = Input::default();
        input.buffer_for_read().extend_from_slice(&[0xFF, 0xFF, 1]);
        let buffer = input.buffer_for_read();
        assert!(buffer.capacity() - buffer.len() >= 65_534);
        assert!(input.is_partial());
    }

    #[test]
    fn output_is_written_in_order_and_gives_back_large_buffers() {
        let mut out = Output::default();
        out.push(b"ab");
        out.push(&[7; 40_000]);
        assert_eq!(out.len(), 4 + 40_002);
        out.advance(3);
        assert_eq!(out.unsent()[0], b'b');
        out.advance(out.len());
        assert!(out.is_empty());
        assert!(out.buffer.capacity() <= KEEP_CAPACITY);
        out.push(&vec![0; 70_000]);
        assert!(out.is_empty(), "longer than a TCP message: dropped");
    }
}
