//! Telegram's HTML parse mode: every dynamic value goes through [`esc`] (a symbol with `<`, a
//! name with `&`), so a message never fails Telegram's entity parser because of what a user
//! typed.

/// Escapes `&`, `<`, `>` and `"` for Telegram's HTML (the only entities it accepts besides
/// numeric ones).
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// The longest message text Telegram takes, in characters after entity parsing.
pub const MAX_TEXT_CHARS: usize = 4096;

/// The longest photo caption Telegram takes, in characters after entity parsing.
pub const MAX_CAPTION_CHARS: usize = 1024;

/// `text` cut to fit a message, on a line boundary where one is near, with a note that it was
/// cut. `text` is HTML already escaped; a cut never splits an entity or a tag (it cuts at a
/// line end; tags here never span lines).
pub fn fit(text: &str) -> String {
    fit_to(text, MAX_TEXT_CHARS)
}

/// [`fit`] for a photo's caption ([`MAX_CAPTION_CHARS`]).
pub fn fit_caption(text: &str) -> String {
    fit_to(text, MAX_CAPTION_CHARS)
}

fn fit_to(text: &str, max: usize) -> String {
    // Escaped entities count as one character once parsed, so the raw length over-counts:
    // cutting the raw text at the limit is always safe.
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let note = "\n…";
    let budget = max - note.chars().count();
    let head: String = text.chars().take(budget).collect();
    let cut = head.rfind('\n').unwrap_or(head.len());
    format!("{}{note}", &head[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_special_character_is_escaped() {
        assert_eq!(esc("XAU<USD> & \"co\""), "XAU&lt;USD&gt; &amp; &quot;co&quot;");
        assert_eq!(esc("plain"), "plain");
        assert_eq!(esc("&amp;"), "&amp;amp;");
    }

    #[test]
    fn long_texts_are_cut_at_a_line_end() {
        let line = "a".repeat(99);
        let text = vec![line.as_str(); 100].join("\n");
        let cut = fit(&text);
        assert!(cut.chars().count() <= MAX_TEXT_CHARS);
        assert!(cut.ends_with("\n…"));
        assert!(cut.trim_end_matches("\n…").lines().all(|l| l == line));
        assert_eq!(fit("short"), "short");
        let caption = fit_caption(&text);
        assert!(caption.chars().count() <= MAX_CAPTION_CHARS && caption.ends_with("\n…"));
    }
}
