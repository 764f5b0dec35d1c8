//! Server-rendered PNG charts (issue 18 part 5), for Telegram (the new-signal alert's photo),
//! the public pages and the trust widget, and the Mini App: pure functions, data in, PNG bytes
//! out, no I/O and no clock.
//!
//! - [`equity`]: an equity curve with its drawdown underneath, from a `(unix ms, value)` series
//!   (today the cumulative-R curve of the public track record; money equity curves use the
//!   same function once the published stream lands).
//! - [`setup`]: one signal's setup — entry, stop and targets labelled with their prices, the
//!   Fibonacci levels when the signal's indicators carry them, its bar time → expiry span, and
//!   the closes known from its `Close` records. **The hub holds no bars** (nodes keep them), so
//!   the setup is drawn on the signal's own levels and times, without candles; drawing the bars
//!   under it is left for when a node publishes them.
//!
//! How: plotters' bitmap backend draws the shapes into an RGB buffer (its `bitmap_backend`
//! feature only: no `image` crate), the text is drawn with `ab_glyph` from the vendored DejaVu
//! Sans (`hub/assets/fonts/`, with its licence: no system font is read), and the `png` crate
//! encodes it. plotters' own `ab_glyph` feature is not used: it would switch the font of every
//! plotters user in a build (the node's SVG report) to fonts registered at run time.
//!
//! Figures are exact `Decimal` everywhere a person reads them (labels, tick values); `f64`
//! appears only to map a value to a pixel. The same input gives the same bytes (no time, no
//! randomness, a fixed encoder setting), so an answer's `ETag` is stable. Input that cannot be
//! drawn (no points, one point, equal levels) gives a "no data yet" image, never an error and
//! never a panic.

pub mod equity;
pub mod setup;

use std::sync::LazyLock;

use ab_glyph::{Font, FontRef, PxScale, ScaleFont};
use plotters::prelude::*;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

/// Telegram's preview size: what every chart is drawn at unless asked otherwise.
pub const WIDTH: u32 = 800;
/// See [`WIDTH`].
pub const HEIGHT: u32 = 450;

/// The vendored font (DejaVu Sans 2.37, Bitstream Vera licence: `DejaVuSans.LICENSE`).
static FONT_BYTES: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

static FONT: LazyLock<Option<FontRef<'static>>> =
    LazyLock::new(|| FontRef::try_from_slice(FONT_BYTES).ok());

/// Why a chart could not be drawn (the input never causes this: a drawing or encoding fault).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChartError {
    /// plotters refused a shape.
    #[error("drawing the chart: {0}")]
    Draw(String),
    /// The PNG encoder failed.
    #[error("encoding the chart: {0}")]
    Encode(String),
    /// The vendored font does not parse (a broken build).
    #[error("the chart font does not load")]
    Font,
}

/// Colours: light for light backgrounds (the default), dark for Telegram's dark theme. Both
/// keep the same meaning: green targets, red stop and drawdown, blue entry and curve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Theme {
    /// White background.
    #[default]
    Light,
    /// Near-black background.
    Dark,
}

impl Theme {
    /// `dark` or anything else (light).
    pub fn parse(s: Option<&str>) -> Theme {
        match s {
            Some("dark") => Theme::Dark,
            _ => Theme::Light,
        }
    }

    pub(crate) fn palette(self) -> Palette {
        match self {
            Theme::Light => Palette {
                bg: RGBColor(255, 255, 255),
                fg: RGBColor(31, 41, 55),
                muted: RGBColor(107, 114, 128),
                grid: RGBColor(229, 231, 235),
                line: RGBColor(37, 99, 235),
                good: RGBColor(22, 163, 74),
                bad: RGBColor(220, 38, 38),
                fib: RGBColor(161, 98, 7),
            },
            Theme::Dark => Palette {
                bg: RGBColor(23, 33, 43),
                fg: RGBColor(229, 231, 235),
                muted: RGBColor(156, 163, 175),
                grid: RGBColor(55, 65, 81),
                line: RGBColor(96, 165, 250),
                good: RGBColor(74, 222, 128),
                bad: RGBColor(248, 113, 113),
                fib: RGBColor(251, 191, 36),
            },
        }
    }
}

/// A theme's colours.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Palette {
    pub bg: RGBColor,
    pub fg: RGBColor,
    pub muted: RGBColor,
    pub grid: RGBColor,
    pub line: RGBColor,
    pub good: RGBColor,
    pub bad: RGBColor,
    pub fib: RGBColor,
}

/// Where a text's `x` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Align {
    Left,
    Center,
    Right,
}

/// An RGB picture being drawn.
pub(crate) struct Canvas {
    pub w: u32,
    pub h: u32,
    buf: Vec<u8>,
    font: FontRef<'static>,
    pub pal: Palette,
}

fn draw_err(e: impl std::fmt::Display) -> ChartError {
    ChartError::Draw(e.to_string())
}

impl Canvas {
    /// A `w` × `h` picture filled with the theme's background.
    pub fn new(w: u32, h: u32, theme: Theme) -> Result<Canvas, ChartError> {
        let font = FONT.clone().ok_or(ChartError::Font)?;
        let pal = theme.palette();
        let n = (w as usize).saturating_mul(h as usize).saturating_mul(3);
        let mut buf = Vec::with_capacity(n);
        for _ in 0..(w as usize).saturating_mul(h as usize) {
            buf.extend_from_slice(&[pal.bg.0, pal.bg.1, pal.bg.2]);
        }
        Ok(Canvas { w, h, buf, font, pal })
    }

    /// Runs plotters drawing code on the picture (pixel coordinates, origin top left).
    pub fn plot(
        &mut self,
        f: impl FnOnce(&DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>) -> Result<(), String>,
    ) -> Result<(), ChartError> {
        let area = BitMapBackend::with_buffer(&mut self.buf, (self.w, self.h)).into_drawing_area();
        f(&area).map_err(ChartError::Draw)?;
        area.present().map_err(draw_err)
    }

    /// The width of `text` at `size` px, in px.
    pub fn text_width(&self, text: &str, size: f32) -> f32 {
        let font = self.font.as_scaled(PxScale::from(size));
        let mut x = 0f32;
        let mut prev = None;
        for c in text.chars() {
            let id = font.glyph_id(c);
            if let Some(p) = prev {
                x += font.kern(p, id);
            }
            x += font.h_advance(id);
            prev = Some(id);
        }
        x
    }

    /// Draws `text` with its baseline at `y`, anchored at `x` by `align`.
    pub fn text(&mut self, x: f32, y: f32, size: f32, color: RGBColor, align: Align, text: &str) {
        let width = self.text_width(text, size);
        let mut pen = match align {
            Align::Left => x,
            Align::Center => x - width / 2.0,
            Align::Right => x - width,
        };
        let scale = PxScale::from(size);
        let font = self.font.as_scaled(scale);
        let mut prev = None;
        for c in text.chars() {
            let id = font.glyph_id(c);
            if let Some(p) = prev {
                pen += font.kern(p, id);
            }
            let glyph = id.with_scale_and_position(scale, ab_glyph::point(pen, y));
            pen += font.h_advance(id);
            prev = Some(id);
            let Some(outline) = self.font.outline_glyph(glyph) else { continue };
            let bounds = outline.px_bounds();
            let (w, h, buf) = (self.w, self.h, &mut self.buf);
            outline.draw(|gx, gy, cover| {
                let px = bounds.min.x as i64 + i64::from(gx);
                let py = bounds.min.y as i64 + i64::from(gy);
                if px < 0 || py < 0 || px >= i64::from(w) || py >= i64::from(h) {
                    return;
                }
                let i = (py as usize * w as usize + px as usize) * 3;
                let a = cover.clamp(0.0, 1.0);
                for (k, fg) in [color.0, color.1, color.2].into_iter().enumerate() {
                    let bg = f32::from(buf[i + k]);
                    buf[i + k] = (bg + (f32::from(fg) - bg) * a).round() as u8;
                }
            });
        }
    }

    /// The picture as PNG bytes (8-bit RGB, fixed compression: the same picture, the same bytes).
    pub fn png(self) -> Result<Vec<u8>, ChartError> {
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, self.w, self.h);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            enc.set_compression(png::Compression::Balanced);
            let mut writer = enc.write_header().map_err(|e| ChartError::Encode(e.to_string()))?;
            writer.write_image_data(&self.buf).map_err(|e| ChartError::Encode(e.to_string()))?;
            writer.finish().map_err(|e| ChartError::Encode(e.to_string()))?;
        }
        Ok(out)
    }
}

/// The "no data yet" picture: the chart's title and why there is nothing to draw.
pub fn no_data(title: &str, why: &str, theme: Theme) -> Result<Vec<u8>, ChartError> {
    let mut c = Canvas::new(WIDTH, HEIGHT, theme)?;
    header(&mut c, title, None);
    let (w, h, pal) = (c.w as f32, c.h as f32, c.pal);
    c.plot(|a| {
        a.draw(&Rectangle::new(
            [(40, 80), (WIDTH as i32 - 40, HEIGHT as i32 - 60)],
            ShapeStyle::from(pal.grid).stroke_width(2),
        ))
        .map_err(|e| e.to_string())
    })?;
    c.text(w / 2.0, h / 2.0, 34.0, pal.muted, Align::Center, "No data yet");
    c.text(w / 2.0, h / 2.0 + 34.0, 17.0, pal.muted, Align::Center, why);
    footer(&mut c);
    c.png()
}

/// The title (and an optional subtitle) at the top left.
pub(crate) fn header(c: &mut Canvas, title: &str, subtitle: Option<&str>) {
    let pal = c.pal;
    c.text(20.0, 32.0, 22.0, pal.fg, Align::Left, &fit(c, title, 22.0, c.w as f32 - 40.0));
    if let Some(s) = subtitle {
        c.text(20.0, 54.0, 14.0, pal.muted, Align::Left, &fit(c, s, 14.0, c.w as f32 - 40.0));
    }
}

/// "Tradecast" at the bottom right.
pub(crate) fn footer(c: &mut Canvas) {
    let (x, y, pal) = (c.w as f32 - 12.0, c.h as f32 - 10.0, c.pal);
    c.text(x, y, 12.0, pal.muted, Align::Right, "verified by Tradecast");
}

/// `text` shortened with "…" to fit `max_w` px.
pub(crate) fn fit(c: &Canvas, text: &str, size: f32, max_w: f32) -> String {
    if c.text_width(text, size) <= max_w {
        return text.to_string();
    }
    let mut chars: Vec<char> = text.chars().collect();
    while !chars.is_empty() {
        chars.pop();
        let s: String = chars.iter().collect::<String>() + "…";
        if c.text_width(&s, size) <= max_w {
            return s;
        }
    }
    "…".to_string()
}

/// A decimal as f64, for pixel maths only.
pub(crate) fn f(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(0.0)
}

/// Evenly spaced "nice" tick values (1, 2 or 5 × 10^k apart) covering `lo..=hi`, at most
/// about `max_ticks`, exact decimals (they are printed).
pub(crate) fn ticks(lo: Decimal, hi: Decimal, max_ticks: u32) -> Vec<Decimal> {
    if hi <= lo || max_ticks == 0 {
        return vec![lo];
    }
    let Some(span) = hi.checked_sub(lo) else { return vec![lo, hi] };
    let want = span.checked_div(Decimal::from(max_ticks)).unwrap_or(span);
    // The smallest 1/2/5 × 10^k at or above `want`, k from −12 up.
    let mut step = None;
    let mut pow = Decimal::new(1, 12);
    'outer: for _ in 0..40 {
        for m in [1, 2, 5] {
            let s = pow.checked_mul(Decimal::from(m)).unwrap_or(Decimal::MAX);
            if s >= want {
                step = Some(s);
                break 'outer;
            }
        }
        pow = match pow.checked_mul(Decimal::TEN) {
            Some(p) => p,
            None => break,
        };
    }
    let Some(step) = step else { return vec![lo, hi] };
    let Some(first) = lo.checked_div(step).and_then(|q| q.ceil().checked_mul(step)) else {
        return vec![lo, hi];
    };
    let mut out = Vec::new();
    let mut v = first;
    while v <= hi && out.len() < 50 {
        out.push(v.normalize());
        v = match v.checked_add(step) {
            Some(n) => n,
            None => break,
        };
    }
    out
}

/// A unix-ms instant as UTC text: `YYYY-MM-DD` when `days` is set, else `MM-DD HH:MM`.
pub(crate) fn when(ms: i64, days: bool) -> String {
    let pattern = if days { "%Y-%m-%d" } else { "%m-%d %H:%M" };
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime(pattern).to_string())
        .unwrap_or_else(|_| "?".into())
}

/// Maps values to pixels linearly.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scale {
    pub v0: f64,
    pub v1: f64,
    pub p0: f64,
    pub p1: f64,
}

impl Scale {
    pub fn px(&self, v: f64) -> i32 {
        let t = if self.v1 == self.v0 { 0.5 } else { (v - self.v0) / (self.v1 - self.v0) };
        (self.p0 + t * (self.p1 - self.p0)).round() as i32
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Reading back what was drawn.

    /// Writes `bytes` as `name` into `$CHARTS_DUMP_DIR` when it is set, to look at the pictures.
    pub fn dump(name: &str, bytes: &[u8]) {
        if let Some(dir) = std::env::var_os("CHARTS_DUMP_DIR") {
            std::fs::write(std::path::Path::new(&dir).join(name), bytes).unwrap();
        }
    }

    /// (width, height, RGB bytes) of a PNG, checking its signature and IHDR.
    pub fn decode(png_bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        assert_eq!(&png_bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
        assert_eq!(&png_bytes[12..16], b"IHDR");
        let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(info.color_type, png::ColorType::Rgb);
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    /// Pixels in the rectangle that differ from `bg`.
    pub fn ink(
        rgb: &[u8],
        w: u32,
        (x0, y0, x1, y1): (u32, u32, u32, u32),
        bg: (u8, u8, u8),
    ) -> usize {
        let mut n = 0;
        for y in y0..y1 {
            for x in x0..x1 {
                let i = ((y * w + x) * 3) as usize;
                if (rgb[i], rgb[i + 1], rgb[i + 2]) != bg {
                    n += 1;
                }
            }
        }
        n
    }

    /// Pixels in the rectangle close to `color` (each channel within 40).
    pub fn count_near(
        rgb: &[u8],
        w: u32,
        (x0, y0, x1, y1): (u32, u32, u32, u32),
        color: (u8, u8, u8),
    ) -> usize {
        let near = |a: u8, b: u8| a.abs_diff(b) <= 40;
        let mut n = 0;
        for y in y0..y1 {
            for x in x0..x1 {
                let i = ((y * w + x) * 3) as usize;
                if near(rgb[i], color.0) && near(rgb[i + 1], color.1) && near(rgb[i + 2], color.2) {
                    n += 1;
                }
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn ticks_are_nice_exact_decimals() {
        assert_eq!(
            ticks(d("0"), d("10"), 5),
            vec![d("0"), d("2"), d("4"), d("6"), d("8"), d("10")]
        );
        // 11.1 / 5 = 2.22 → a step of 5.
        assert_eq!(ticks(d("-3.2"), d("7.9"), 5), vec![d("0"), d("5")]);
        assert_eq!(
            ticks(d("1.0912"), d("1.0935"), 6),
            vec![d("1.0915"), d("1.092"), d("1.0925"), d("1.093"), d("1.0935")]
        );
        assert_eq!(ticks(d("5"), d("5"), 4), vec![d("5")]);
    }

    #[test]
    fn the_font_loads_and_text_has_width() {
        let c = Canvas::new(10, 10, Theme::Light).unwrap();
        assert!(c.text_width("EURUSD 1.09128", 16.0) > 80.0);
        assert!(fit(&c, &"x".repeat(500), 16.0, 100.0).ends_with('…'));
    }

    #[test]
    fn no_data_is_a_picture_with_text() {
        for theme in [Theme::Light, Theme::Dark] {
            let png = no_data("Cumulative R", "no closed trades", theme).unwrap();
            let (w, h, rgb) = testing::decode(&png);
            assert_eq!((w, h), (WIDTH, HEIGHT));
            let bg = theme.palette().bg;
            // "No data yet" in the middle band.
            assert!(testing::ink(&rgb, w, (200, 180, 600, 260), (bg.0, bg.1, bg.2)) > 500);
            assert_eq!(png, no_data("Cumulative R", "no closed trades", theme).unwrap());
        }
    }
}
