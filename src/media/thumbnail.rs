//! Thumbnails: which of the spec's recommended sizes serves a request, the
//! dimensions for `crop` and `scale`, and decoding (PNG, JPEG, GIF, WebP)
//! with bounded pixels and memory, then encoding (PNG, or JPEG for JPEG
//! originals).
//!
//! A request is served from the smallest standard size of its method that
//! is at least as large both ways; none fits, or the original is no larger
//! than that size, and the original itself is the answer (the spec forbids
//! upscaling and thumbnails smaller than asked). Animated originals give a
//! still of their first frame (`animated` is not supported, which the spec
//! allows).
//!
//! Decoding and encoding ([`make`]) need the `thumbnails` cargo feature (on
//! by default: the `image` crate); the size choice is always built, so a
//! build without it can still serve stored thumbnails and originals.

#[cfg(feature = "thumbnails")]
use std::io::{BufRead, Cursor, Seek};

#[cfg(feature = "thumbnails")]
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};

#[cfg(feature = "thumbnails")]
use crate::util::Semaphore;

/// Largest original decoded, in pixels (width × height).
pub const PIXELS_MAX: u64 = 32_000_000;
/// Largest width or height decoded.
pub const SIDE_MAX: u32 = 32_768;
/// Most memory one decode may allocate.
pub const DECODE_BYTES_MAX: u64 = 128 * 1024 * 1024;
/// Decodes running at once: each may hold `DECODE_BYTES_MAX`.
pub const DECODES_MAX: usize = 2;
/// JPEG quality of thumbnails of JPEG originals.
#[cfg(feature = "thumbnails")]
const JPEG_QUALITY: u8 = 80;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Crop,
    Scale,
}

impl Method {
    pub fn parse(s: &str) -> Option<Method> {
        match s {
            "crop" => Some(Method::Crop),
            "scale" => Some(Method::Scale),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Crop => "crop",
            Method::Scale => "scale",
        }
    }
}

/// A thumbnail size: the box and how the image goes into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub width: u32,
    pub height: u32,
    pub method: Method,
}

/// The sizes the spec recommends, smallest first within each method.
pub const STANDARD: [Size; 5] = [
    Size { width: 32, height: 32, method: Method::Crop },
    Size { width: 96, height: 96, method: Method::Crop },
    Size { width: 320, height: 240, method: Method::Scale },
    Size { width: 640, height: 480, method: Method::Scale },
    Size { width: 800, height: 600, method: Method::Scale },
];

/// The standard size that serves a request for at least `width` ×
/// `height`: the smallest of the same method that is large enough; for a
/// crop larger than every crop size, the smallest large-enough scale size
/// cropped the same way. `None`: no standard size is large enough.
pub fn choose(width: u32, height: u32, method: Method) -> Option<Size> {
    let fits = |s: &&Size| s.width >= width && s.height >= height;
    STANDARD
        .iter()
        .filter(|s| s.method == method)
        .find(fits)
        .copied()
        .or_else(|| STANDARD.iter().find(fits).map(|s| Size { method, ..*s }))
}

/// How an original of `w` × `h` becomes a thumbnail of `size`: resized to
/// `resize`, then (crop) cut to `crop` around the centre. `None`: it would
/// not shrink, so the original is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub resize: (u32, u32),
    pub crop: Option<(u32, u32)>,
}

pub fn plan(w: u32, h: u32, size: Size) -> Option<Plan> {
    if w == 0 || h == 0 {
        return None;
    }
    let (bw, bh) = (f64::from(size.width), f64::from(size.height));
    let (fw, fh) = (f64::from(w), f64::from(h));
    let factor = match size.method {
        // Cover the box, then cut off what sticks out.
        Method::Crop => (bw / fw).max(bh / fh),
        // Fit inside the box.
        Method::Scale => (bw / fw).min(bh / fh),
    };
    if factor >= 1.0 {
        return None;
    }
    let scaled = |x: f64| ((x * factor).round() as u32).max(1);
    let resize = (scaled(fw), scaled(fh));
    let crop = match size.method {
        Method::Crop => Some((resize.0.min(size.width), resize.1.min(size.height))),
        Method::Scale => None,
    };
    Some(Plan { resize, crop })
}

/// Why no thumbnail could be made.
#[cfg(feature = "thumbnails")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ThumbError {
    /// Not an image of a supported format, or corrupt.
    Unsupported(String),
    /// Over `PIXELS_MAX`, `SIDE_MAX` or `DECODE_BYTES_MAX`.
    TooLarge,
}

/// What to serve.
#[cfg(feature = "thumbnails")]
#[derive(Debug)]
pub enum Thumbnail {
    /// The original is small enough already.
    Original,
    Made {
        bytes: Vec<u8>,
        content_type: &'static str,
        width: u32,
        height: u32,
    },
}

/// Makes the thumbnail of `size` from an encoded image. The header is read
/// first and an image over the limits refused before any pixel is decoded.
#[cfg(feature = "thumbnails")]
pub fn make<R: BufRead + Seek>(input: R, size: Size) -> Result<Thumbnail, ThumbError> {
    let unsupported = |e: &dyn std::fmt::Display| ThumbError::Unsupported(e.to_string());
    let reader = ImageReader::new(input).with_guessed_format().map_err(|e| unsupported(&e))?;
    let format = match reader.format() {
        Some(f @ (ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::Gif | ImageFormat::WebP)) => f,
        _ => return Err(ThumbError::Unsupported("not a PNG, JPEG, GIF or WebP image".into())),
    };
    let mut reader = reader;
    let mut limits = Limits::default();
    limits.max_image_width = Some(SIDE_MAX);
    limits.max_image_height = Some(SIDE_MAX);
    limits.max_alloc = Some(DECODE_BYTES_MAX);
    reader.limits(limits);
    let decoder = reader.into_decoder().map_err(|e| match e {
        image::ImageError::Limits(_) => ThumbError::TooLarge,
        e => unsupported(&e),
    })?;
    let (w, h) = decoder.dimensions();
    if u64::from(w) * u64::from(h) > PIXELS_MAX || decoder.total_bytes() > DECODE_BYTES_MAX {
        return Err(ThumbError::TooLarge);
    }
    let Some(plan) = plan(w, h, size) else {
        return Ok(Thumbnail::Original);
    };
    let image = {
        let _permit = DECODES.acquire();
        DynamicImage::from_decoder(decoder).map_err(|e| match e {
            image::ImageError::Limits(_) => ThumbError::TooLarge,
            e => unsupported(&e),
        })?
    };
    let mut thumb = image.thumbnail_exact(plan.resize.0, plan.resize.1);
    drop(image);
    if let Some((cw, ch)) = plan.crop {
        let x = (thumb.width() - cw) / 2;
        let y = (thumb.height() - ch) / 2;
        thumb = thumb.crop_imm(x, y, cw, ch);
    }
    let (width, height) = (thumb.width(), thumb.height());
    let mut bytes = Vec::new();
    let content_type = if format == ImageFormat::Jpeg {
        let rgb = thumb.to_rgb8();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, JPEG_QUALITY)
            .encode_image(&rgb)
            .map_err(|e| unsupported(&e))?;
        "image/jpeg"
    } else {
        let still = if thumb.color().has_alpha() {
            DynamicImage::ImageRgba8(thumb.to_rgba8())
        } else {
            DynamicImage::ImageRgb8(thumb.to_rgb8())
        };
        still.write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png).map_err(|e| unsupported(&e))?;
        "image/png"
    };
    Ok(Thumbnail::Made { bytes, content_type, width, height })
}

/// The permits for running decodes, shared by the whole process.
#[cfg(feature = "thumbnails")]
static DECODES: Semaphore = Semaphore::new(DECODES_MAX);

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "thumbnails")]
    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = DynamicImage::ImageRgb8(image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 7])
        }));
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), ImageFormat::Png).unwrap();
        out
    }

    #[test]
    fn choosing_sizes() {
        let size = |w, h, m| (w, h, m);
        let got = |w, h, m| choose(w, h, m).map(|s| size(s.width, s.height, s.method));
        assert_eq!(got(1, 1, Method::Crop), Some(size(32, 32, Method::Crop)));
        assert_eq!(got(33, 20, Method::Crop), Some(size(96, 96, Method::Crop)));
        assert_eq!(got(100, 100, Method::Crop), Some(size(320, 240, Method::Crop)));
        assert_eq!(got(96, 96, Method::Scale), Some(size(320, 240, Method::Scale)));
        assert_eq!(got(641, 10, Method::Scale), Some(size(800, 600, Method::Scale)));
        assert_eq!(got(801, 600, Method::Scale), None);
        assert_eq!(got(0, 0, Method::Scale), Some(size(320, 240, Method::Scale)));
    }

    #[test]
    fn plans() {
        let crop96 = Size { width: 96, height: 96, method: Method::Crop };
        let scale320 = Size { width: 320, height: 240, method: Method::Scale };
        assert_eq!(plan(640, 480, crop96), Some(Plan { resize: (128, 96), crop: Some((96, 96)) }));
        assert_eq!(plan(640, 480, scale320), Some(Plan { resize: (320, 240), crop: None }));
        assert_eq!(plan(1000, 500, scale320), Some(Plan { resize: (320, 160), crop: None }));
        // Never upscaled: small originals are served as they are.
        assert_eq!(plan(320, 240, scale320), None);
        assert_eq!(plan(50, 40, crop96), None);
        assert_eq!(plan(640, 90, crop96), None);
        assert_eq!(plan(0, 10, crop96), None);
    }

    #[cfg(feature = "thumbnails")]
    #[test]
    fn makes_and_refuses() {
        let crop32 = Size { width: 32, height: 32, method: Method::Crop };
        match make(Cursor::new(png(100, 50)), crop32).unwrap() {
            Thumbnail::Made { width, height, content_type, bytes } => {
                assert_eq!((width, height, content_type), (32, 32, "image/png"));
                let back = image::load_from_memory(&bytes).unwrap();
                assert_eq!((back.width(), back.height()), (32, 32));
            }
            Thumbnail::Original => panic!("expected a thumbnail"),
        }
        assert!(matches!(make(Cursor::new(png(20, 20)), crop32).unwrap(), Thumbnail::Original));
        assert!(matches!(
            make(Cursor::new(b"not an image".to_vec()), crop32),
            Err(ThumbError::Unsupported(_))
        ));
        let mut truncated = png(100, 100);
        truncated.truncate(60);
        assert!(make(Cursor::new(truncated), crop32).is_err());
    }

    #[cfg(feature = "thumbnails")]
    #[test]
    fn decompression_bomb_is_refused_from_the_header() {
        // A valid PNG claiming 20000 × 20000 pixels, with a few bytes of data.
        let mut bomb = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&20_000u32.to_be_bytes());
        ihdr.extend_from_slice(&20_000u32.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        for (kind, data) in [(b"IHDR", ihdr), (b"IDAT", vec![0x78, 0x9c, 0, 0, 0, 0]), (b"IEND", vec![])] {
            bomb.extend_from_slice(&(data.len() as u32).to_be_bytes());
            let mut typed = kind.to_vec();
            typed.extend_from_slice(&data);
            bomb.extend_from_slice(&typed);
            bomb.extend_from_slice(&crc32(&typed).to_be_bytes());
        }
        let crop32 = Size { width: 32, height: 32, method: Method::Crop };
        assert_eq!(make(Cursor::new(bomb), crop32).unwrap_err(), ThumbError::TooLarge);
    }

    #[cfg(feature = "thumbnails")]
    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }
}
