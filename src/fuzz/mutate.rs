//! The mutations: what a fuzzer does to a valid input to make it interesting.

use rand::Rng;
use rand::rngs::SmallRng;

/// Bytes that sit on boundaries: zero, sign bits, all ones, DNS pointer and label-length
/// limits, ASCII delimiters.
const BYTES: &[u8] = &[
    0x00, 0x01, 0x02, 0x0c, 0x20, 0x3f, 0x40, 0x7f, 0x80, 0xc0, 0xc0, 0xfe, 0xff, b'"', b'\\',
    b'/', b'.', b'-', b'%', b'\n', b'\r',
];

/// Integers that sit on boundaries, written as 2, 4 or 8 bytes.
const INTEGERS: &[u64] = &[
    0,
    1,
    2,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x200,
    0x3fff,
    0x7fff,
    0x8000,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    u64::MAX,
];

/// Applies one to eight random mutations to `input`; `other` is a second input to splice
/// from, `dictionary` tokens of the input's language.
pub fn mutate(rng: &mut SmallRng, input: &mut Vec<u8>, other: &[u8], dictionary: &[&[u8]]) {
    for _ in 0..rng.random_range(1..=8) {
        let len = input.len();
        match rng.random_range(0..11) {
            0 if len > 0 => {
                let at = rng.random_range(0..len);
                input[at] ^= 1 << rng.random_range(0..8);
            }
            1 if len > 0 => {
                let at = rng.random_range(0..len);
                input[at] = BYTES[rng.random_range(0..BYTES.len())];
            }
            2 if len > 0 => {
                let at = rng.random_range(0..len);
                input[at] = rng.random();
            }
            3 => {
                let at = rng.random_range(0..=len);
                let count = rng.random_range(1..=8);
                let bytes: Vec<u8> = (0..count).map(|_| rng.random()).collect();
                input.splice(at..at, bytes);
            }
            4 if len > 0 => {
                let at = rng.random_range(0..len);
                let end = (at + rng.random_range(1..=16)).min(len);
                input.drain(at..end);
            }
            5 if len > 0 => {
                // Repeat a chunk (a label, a record, a JSON member) somewhere else.
                let at = rng.random_range(0..len);
                let end = (at + rng.random_range(1..=32)).min(len);
                let chunk = input[at..end].to_vec();
                let to = rng.random_range(0..=len);
                input.splice(to..to, chunk);
            }
            6 if len > 0 => input.truncate(rng.random_range(0..len)),
            7 if !other.is_empty() => {
                // This input's head, the other's tail.
                let head = rng.random_range(0..=len);
                let tail = rng.random_range(0..other.len());
                input.truncate(head);
                input.extend_from_slice(&other[tail..]);
            }
            8 if len > 0 => {
                let value = INTEGERS[rng.random_range(0..INTEGERS.len())];
                let width = [2, 4, 8][rng.random_range(0..3)];
                // The low `width` bytes, big- or little-endian.
                let bytes: Vec<u8> = match rng.random::<bool>() {
                    true => value.to_be_bytes()[8 - width..].to_vec(),
                    false => value.to_le_bytes()[..width].to_vec(),
                };
                let at = rng.random_range(0..len);
                let end = (at + width).min(len);
                input.splice(at..end, bytes);
            }
            9 | 10 if !dictionary.is_empty() => {
                let token = dictionary[rng.random_range(0..dictionary.len())];
                let at = rng.random_range(0..=len);
                if rng.random::<bool>() {
                    input.splice(at..at, token.iter().copied());
                } else {
                    let end = (at + token.len()).min(len);
                    input.splice(at..end, token.iter().copied());
                }
            }
            _ => {
                let at = rng.random_range(0..=len);
                input.insert(at, BYTES[rng.random_range(0..BYTES.len())]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn mutations_change_inputs_and_stay_bounded() {
        let mut rng = SmallRng::seed_from_u64(1);
        let seed = b"{\"ipv4\": \"10.0.0.1\", \"port\": 80}".to_vec();
        let mut changed = 0;
        for _ in 0..1000 {
            let mut input = seed.clone();
            mutate(&mut rng, &mut input, b"other", &[b"null"]);
            changed += usize::from(input != seed);
            assert!(input.len() <= seed.len() + 8 * 64);
        }
        assert!(changed > 950, "{changed}");
    }
}
