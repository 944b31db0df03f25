//! What goes over a game connection's DataChannels, and how the researcher's messages are
//! kept apart from pairlab's own packets. Pure: tested natively.
//!
//! The rule (the same on `control` and on `inputs`):
//! - a **text** frame is always a researcher's string (`session.send(to, "…")`), exactly as
//!   sent;
//! - a **binary** frame starts with one tag byte:
//!   - [`TAG_USER`] (0): a researcher's bytes follow, exactly as sent;
//!   - [`TAG_INPUTS`] (1): an [`InputPacket`] of the built-in game loop: the episode, then
//!     `[frame, input]` pairs, each number a little-endian `u32`;
//!   - [`TAG_CONTROL`] (2): one pairlab control byte: [`CONTROL_BYE`] (the peer closes the
//!     game connection on purpose) or [`CONTROL_READY`] (the peer's `play` loop is waiting to
//!     start episode 1).
//!
//! Anything else is refused with a [`FramingError`] (a peer running another pairlab version).

use super::logic::InputPacket;
use crate::peer::ChannelData;

/// Tag byte of a researcher's binary message.
pub const TAG_USER: u8 = 0;
/// Tag byte of an input packet of the built-in game loop.
pub const TAG_INPUTS: u8 = 1;
/// Tag byte of a pairlab control message.
pub const TAG_CONTROL: u8 = 2;
/// Control byte: the sender closes the game connection on purpose (no ICE restart).
pub const CONTROL_BYE: u8 = 0;
/// Control byte: the sender's game loop is ready to start episode 1.
pub const CONTROL_READY: u8 = 1;

/// One message of a game connection, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A researcher's string.
    Text(String),
    /// A researcher's bytes.
    Bytes(Vec<u8>),
    /// The built-in loop's inputs.
    Inputs(InputPacket),
    /// The peer closes the game connection on purpose.
    Bye,
    /// The peer's loop is ready to start.
    Ready,
}

/// Why a frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// A binary frame without even its tag byte.
    #[error("an empty binary frame (no tag byte)")]
    Empty,
    /// A tag byte this version does not know.
    #[error("an unknown frame tag {0} (a peer running another pairlab version?)")]
    UnknownTag(u8),
    /// An input packet whose length is not 4 + 8·n bytes after the tag.
    #[error("an input packet of {0} bytes (expected 4 + 8·n)")]
    BadInputs(usize),
    /// A control frame that is not one known control byte.
    #[error("an unknown control frame {0:?}")]
    BadControl(Vec<u8>),
}

impl Frame {
    /// The frame as it goes on the channel.
    pub fn encode(&self) -> ChannelData {
        match self {
            Frame::Text(text) => ChannelData::Text(text.clone()),
            Frame::Bytes(bytes) => ChannelData::Binary(tagged(TAG_USER, bytes)),
            Frame::Inputs(packet) => {
                let mut out = Vec::with_capacity(5 + 8 * packet.i.len());
                out.push(TAG_INPUTS);
                out.extend_from_slice(&packet.e.to_le_bytes());
                for (frame, input) in &packet.i {
                    out.extend_from_slice(&frame.to_le_bytes());
                    out.extend_from_slice(&input.to_le_bytes());
                }
                ChannelData::Binary(out)
            }
            Frame::Bye => ChannelData::Binary(vec![TAG_CONTROL, CONTROL_BYE]),
            Frame::Ready => ChannelData::Binary(vec![TAG_CONTROL, CONTROL_READY]),
        }
    }

    /// Reads a frame that came off a channel.
    ///
    /// # Errors
    /// A [`FramingError`] for a binary frame that does not follow the rule in the module
    /// docs.
    pub fn decode(data: ChannelData) -> Result<Frame, FramingError> {
        let bytes = match data {
            ChannelData::Text(text) => return Ok(Frame::Text(text)),
            ChannelData::Binary(bytes) => bytes,
        };
        let (&tag, body) = bytes.split_first().ok_or(FramingError::Empty)?;
        match tag {
            TAG_USER => Ok(Frame::Bytes(body.to_vec())),
            TAG_INPUTS => decode_inputs(body).map(Frame::Inputs),
            TAG_CONTROL => match body {
                [CONTROL_BYE] => Ok(Frame::Bye),
                [CONTROL_READY] => Ok(Frame::Ready),
                other => Err(FramingError::BadControl(other.to_vec())),
            },
            other => Err(FramingError::UnknownTag(other)),
        }
    }
}

fn tagged(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 1);
    out.push(tag);
    out.extend_from_slice(body);
    out
}

fn u32_at(body: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&body[at..at + 4]);
    u32::from_le_bytes(word)
}

fn decode_inputs(body: &[u8]) -> Result<InputPacket, FramingError> {
    if body.len() < 4 || (body.len() - 4) % 8 != 0 {
        return Err(FramingError::BadInputs(body.len()));
    }
    let i = (4..body.len())
        .step_by(8)
        .map(|at| (u32_at(body, at), u32_at(body, at + 4)))
        .collect();
    Ok(InputPacket {
        e: u32_at(body, 0),
        i,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(frame: Frame) {
        assert_eq!(
            Frame::decode(frame.encode()),
            Ok(frame.clone()),
            "{frame:?}"
        );
    }

    #[test]
    fn every_frame_round_trips() {
        round_trip(Frame::Text(String::new()));
        round_trip(Frame::Text("héllo {\"json\": 1}".into()));
        round_trip(Frame::Bytes(vec![]));
        round_trip(Frame::Bytes(vec![TAG_INPUTS, 0, 0, 0, 0]));
        round_trip(Frame::Inputs(InputPacket { e: 3, i: vec![] }));
        round_trip(Frame::Inputs(InputPacket {
            e: 1,
            i: vec![(0, 0), (7, u32::MAX), (u32::MAX, 5)],
        }));
        round_trip(Frame::Bye);
        round_trip(Frame::Ready);
    }

    #[test]
    fn researcher_data_never_reads_as_pairlab_packets() {
        // Text that looks like a pairlab packet stays the researcher's text.
        assert_eq!(
            Frame::decode(ChannelData::Text("{\"bye\":true}".into())),
            Ok(Frame::Text("{\"bye\":true}".into()))
        );
        // Bytes that look like an input packet or a bye stay the researcher's bytes.
        let inputs_like = vec![TAG_INPUTS, 1, 0, 0, 0];
        let ChannelData::Binary(wire) = Frame::Bytes(inputs_like.clone()).encode() else {
            panic!("bytes go as a binary frame");
        };
        assert_eq!(wire[0], TAG_USER);
        assert_eq!(
            Frame::decode(ChannelData::Binary(wire)),
            Ok(Frame::Bytes(inputs_like))
        );
    }

    #[test]
    fn input_packets_are_little_endian_words() {
        let packet = InputPacket {
            e: 2,
            i: vec![(5, 0x0102_0304)],
        };
        assert_eq!(
            Frame::Inputs(packet).encode(),
            ChannelData::Binary(vec![1, 2, 0, 0, 0, 5, 0, 0, 0, 4, 3, 2, 1])
        );
    }

    #[test]
    fn malformed_frames_are_refused() {
        let bin = |b: &[u8]| Frame::decode(ChannelData::Binary(b.to_vec()));
        assert_eq!(bin(&[]), Err(FramingError::Empty));
        assert_eq!(bin(&[9, 1]), Err(FramingError::UnknownTag(9)));
        assert_eq!(bin(&[TAG_INPUTS, 1, 0, 0]), Err(FramingError::BadInputs(3)));
        assert_eq!(
            bin(&[TAG_INPUTS, 1, 0, 0, 0, 1, 0, 0, 0]),
            Err(FramingError::BadInputs(8))
        );
        assert_eq!(bin(&[TAG_CONTROL]), Err(FramingError::BadControl(vec![])));
        assert_eq!(
            bin(&[TAG_CONTROL, 7]),
            Err(FramingError::BadControl(vec![7]))
        );
    }
}
