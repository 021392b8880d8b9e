//! A valid, small PNG for `screencap`: a black 1080x2400 8-bit grayscale image whose zlib
//! stream is run-length coded with fixed Huffman codes (about 16 KiB).

const CRC_POLY: u32 = 0xEDB8_8320;

fn crc32(parts: &[&[u8]]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for part in parts {
        for &b in *part {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ CRC_POLY
                } else {
                    crc >> 1
                };
            }
        }
    }
    !crc
}

struct BitWriter {
    out: Vec<u8>,
    acc: u32,
    n: u32,
}

impl BitWriter {
    /// Writes `len` bits of `value`, least significant bit first (deflate's bit order).
    fn bits(&mut self, value: u32, len: u32) {
        for i in 0..len {
            self.acc |= ((value >> i) & 1) << self.n;
            self.n += 1;
            if self.n == 8 {
                self.out.push(self.acc as u8);
                self.acc = 0;
                self.n = 0;
            }
        }
    }

    /// Writes a Huffman code, most significant bit first.
    fn code(&mut self, code: u32, len: u32) {
        for i in (0..len).rev() {
            self.bits((code >> i) & 1, 1);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        if self.n > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}

/// A zlib stream of `len` zero bytes: one literal, then back-references at distance 1.
fn zlib_zeros(len: usize) -> Vec<u8> {
    let mut w = BitWriter {
        out: vec![0x78, 0x01],
        acc: 0,
        n: 0,
    };
    w.bits(1, 1); // BFINAL
    w.bits(1, 2); // BTYPE = fixed Huffman
    let mut left = len;
    if left > 0 {
        w.code(0x30, 8); // literal 0
        left -= 1;
    }
    while left >= 3 {
        let run = left.min(258);
        // A run of 258 has its own code; shorter tails use 3..=10 (codes 257..=264, no extra
        // bits) or fall back to literals.
        if run == 258 {
            w.code(0b1100_0101, 8); // code 285
        } else if run <= 10 {
            w.code((run - 3 + 1) as u32, 7); // codes 257..=264 are 7-bit 0000001..
        } else {
            break;
        }
        w.code(0, 5); // distance code 0 = distance 1
        left -= run;
    }
    for _ in 0..left {
        w.code(0x30, 8);
    }
    w.code(0, 7); // end of block (code 256)
    let mut out = w.finish();
    // Adler-32 of zeros: a = 1, b = len (mod 65521).
    let b = (len % 65_521) as u32;
    let adler = (b << 16) | 1;
    out.extend_from_slice(&adler.to_be_bytes());
    out
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc32(&[kind, data]).to_be_bytes());
}

/// A black `width`x`height` grayscale PNG.
pub(crate) fn black_png(width: u32, height: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]); // 8-bit grayscale, deflate, no filter, no interlace
    chunk(&mut out, b"IHDR", &ihdr);
    // Each row is a filter byte (0) and `width` zero pixels.
    let raw_len = (width as usize + 1) * height as usize;
    chunk(&mut out, b"IDAT", &zlib_zeros(raw_len));
    chunk(&mut out, b"IEND", &[]);
    out
}

/// `png` with a `tEXt` chunk (`keyword`, `text`) inserted before `IEND`.
pub(crate) fn with_text(mut png: Vec<u8>, keyword: &str, text: &str) -> Vec<u8> {
    let iend = png.split_off(png.len().saturating_sub(12));
    let mut data = keyword.as_bytes().to_vec();
    data.push(0);
    data.extend_from_slice(text.as_bytes());
    chunk(&mut png, b"tEXt", &data);
    png.extend_from_slice(&iend);
    png
}

/// `png` with `len` bytes of pseudo-random filler in a private ancillary chunk (`pfPd`, which
/// decoders skip) before `IEND`.
pub(crate) fn with_padding(mut png: Vec<u8>, len: usize) -> Vec<u8> {
    if len == 0 {
        return png;
    }
    let iend = png.split_off(png.len().saturating_sub(12));
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let data: Vec<u8> = (0..len)
        .map(|_| {
            // xorshift64: filler that does not compress.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    chunk(&mut png, b"pfPd", &data);
    png.extend_from_slice(&iend);
    png
}

/// The first pixel of an 8-bit RGB PNG whose image data starts with a stored (uncompressed)
/// deflate block; None for any other PNG or anything else.
pub(crate) fn first_rgb(bytes: &[u8]) -> Option<[u8; 3]> {
    let mut rest = bytes.strip_prefix(b"\x89PNG\r\n\x1a\n")?;
    let mut rgb8 = false;
    while rest.len() >= 12 {
        let len = u32::from_be_bytes(rest[..4].try_into().ok()?) as usize;
        let kind = &rest[4..8];
        let data = rest.get(8..8 + len)?;
        match kind {
            b"IHDR" => rgb8 = data.get(8..10) == Some(&[8, 2]),
            b"IDAT" if rgb8 => {
                // zlib header (2 bytes), block header (BTYPE 00: the rest of its byte), LEN,
                // NLEN, then the raw rows: a filter byte (0: none) and the pixels.
                let block = data.get(2..)?;
                if block.first()? & 0b110 != 0 {
                    return None;
                }
                let raw = block.get(5..)?;
                return match raw {
                    [0, r, g, b, ..] => Some([*r, *g, *b]),
                    _ => None,
                };
            }
            _ => {}
        }
        rest = rest.get(12 + len..)?;
    }
    None
}

/// An 8-bit RGB PNG of one colour in stored deflate blocks (what the agent's locate writes),
/// for tests.
#[cfg(test)]
pub(crate) fn solid_rgb_stored(width: u32, height: u32, rgb: [u8; 3]) -> Vec<u8> {
    let row: Vec<u8> = std::iter::once(0)
        .chain(rgb.iter().copied().cycle().take(width as usize * 3))
        .collect();
    let raw = row.repeat(height as usize);
    assert!(raw.len() <= 65_535, "one stored block");
    let mut z = vec![0x78, 0x01, 0x01];
    z.extend_from_slice(&(raw.len() as u16).to_le_bytes());
    z.extend_from_slice(&(!(raw.len() as u16)).to_le_bytes());
    z.extend_from_slice(&raw);
    let (mut a, mut b) = (1u32, 0u32);
    for &x in &raw {
        a = (a + u32::from(x)) % 65_521;
        b = (b + a) % 65_521;
    }
    z.extend_from_slice(&((b << 16) | a).to_be_bytes());
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &z);
    chunk(&mut out, b"IEND", &[]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_pixel_of_a_stored_rgb_png_and_text_chunks() {
        let png = solid_rgb_stored(9, 20, [255, 0, 255]);
        assert_eq!(first_rgb(&png), Some([255, 0, 255]));
        assert_eq!(first_rgb(&black_png(4, 4)), None, "grayscale, compressed");
        assert_eq!(first_rgb(b"not a png"), None);
        assert_eq!(first_rgb(&png[..png.len() / 2]), None, "truncated");
        let t = with_text(black_png(4, 4), "Description", "screen=Feed");
        assert_eq!(&t[t.len() - 8..t.len() - 4], b"IEND");
        let at = t.windows(4).position(|w| w == b"tEXt").unwrap();
        assert_eq!(&t[at + 4..at + 4 + 23], b"Description\0screen=Feed");
    }

    #[test]
    fn crc_matches_the_png_reference() {
        // The CRC of an empty IEND chunk is fixed by the spec.
        assert_eq!(crc32(&[b"IEND"]), 0xAE42_6082);
    }

    #[test]
    fn png_has_signature_ihdr_and_end() {
        let png = black_png(1080, 2400);
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[12..16], b"IHDR");
        assert_eq!(
            u32::from_be_bytes([png[16], png[17], png[18], png[19]]),
            1080
        );
        assert_eq!(
            u32::from_be_bytes([png[20], png[21], png[22], png[23]]),
            2400
        );
        assert_eq!(&png[png.len() - 8..png.len() - 4], b"IEND");
        assert!(png.len() < 32 * 1024, "{}", png.len());
    }

    /// Inflates the fixed-Huffman stream back (only the codes `zlib_zeros` emits) to prove the
    /// bit layout is right.
    #[test]
    fn zlib_stream_decodes_to_the_right_length() {
        for len in [0usize, 1, 2, 3, 5, 13, 258, 259, 261, 1000, 2_594_400] {
            let z = zlib_zeros(len);
            assert_eq!(z[0], 0x78);
            assert_eq!(
                (u16::from(z[0]) << 8 | u16::from(z[1])) % 31,
                0,
                "zlib header check"
            );
            let body = &z[2..z.len() - 4];
            let mut pos = 0usize;
            let bit = |pos: &mut usize| -> u32 {
                let b = (body[*pos / 8] >> (*pos % 8)) & 1;
                *pos += 1;
                u32::from(b)
            };
            let code = |pos: &mut usize, n: u32| -> u32 {
                let mut v = 0;
                for _ in 0..n {
                    v = (v << 1) | bit(pos);
                }
                v
            };
            assert_eq!(bit(&mut pos), 1);
            assert_eq!(bit(&mut pos) | (bit(&mut pos) << 1), 1);
            let mut produced = 0usize;
            loop {
                let c7 = code(&mut pos, 7);
                if c7 == 0 {
                    break; // end of block
                }
                if (1..=8).contains(&c7) {
                    produced += c7 as usize + 2;
                    assert_eq!(code(&mut pos, 5), 0);
                    continue;
                }
                let c8 = (c7 << 1) | bit(&mut pos);
                match c8 {
                    0x30 => produced += 1,
                    0b1100_0101 => {
                        produced += 258;
                        assert_eq!(code(&mut pos, 5), 0);
                    }
                    other => panic!("unexpected code {other:#x}"),
                }
            }
            assert_eq!(produced, len);
        }
    }
}
