//! `parse_mode=HTML` as the Bot API parses it: the tags Telegram knows, properly nested and
//! closed, and the four named character entities plus numeric ones. The result is the plain text
//! and its `MessageEntity` list (offsets and lengths in UTF-16 code units, as Telegram counts).
//!
//! Stricter than Telegram in one place, on purpose: a bare `&` that does not start one of the
//! accepted entities is refused (Telegram's documentation says it must be escaped; its parser
//! tolerates some), so a hub that forgets to escape a dynamic value fails here first.

use serde_json::{Value, json};

/// Text after entity parsing.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// The plain text, tags removed and entities decoded.
    pub text: String,
    /// `MessageEntity` objects (`type`, `offset`, `length`, and `url` / `language` /
    /// `custom_emoji_id` where the type has one), in order of their start.
    pub entities: Vec<Value>,
}

/// Why an HTML text did not parse: the part of Telegram's description after
/// `"Bad Request: can't parse entities: "`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HtmlError(pub String);

struct Open {
    tag: String,
    /// Byte offset of the `<` in the input (for messages).
    at: usize,
    /// UTF-16 offset in the output where the entity starts.
    start: usize,
    attrs: Vec<(String, String)>,
}

/// The attribute key a `<pre>` keeps its language under (not a name an attribute can have).
const LANGUAGE: &str = "\0language";

const TAGS: &[&str] = &[
    "b",
    "strong",
    "i",
    "em",
    "u",
    "ins",
    "s",
    "strike",
    "del",
    "span",
    "tg-spoiler",
    "a",
    "code",
    "pre",
    "blockquote",
    "tg-emoji",
];

/// Parses `input` as Telegram's HTML.
pub fn parse(input: &str) -> Result<Parsed, HtmlError> {
    let bytes = input.as_bytes();
    let mut text = String::with_capacity(input.len());
    let mut utf16 = 0usize;
    let mut stack: Vec<Open> = Vec::new();
    let mut entities: Vec<(usize, usize, Value)> = Vec::new();
    let mut i = 0usize;
    while i < bytes.len() {
        match bytes[i] {
            b'&' => {
                let (c, next) = entity(input, i)?;
                text.push(c);
                utf16 += c.len_utf16();
                i = next;
            }
            b'<' if bytes.get(i + 1) == Some(&b'/') => {
                let Some(rel) = input[i..].find('>') else {
                    return Err(HtmlError(format!("Unclosed end tag at byte offset {i}")));
                };
                let name = input[i + 2..i + rel].trim().to_ascii_lowercase();
                let Some(open) = stack.pop() else {
                    return Err(HtmlError(format!("Unexpected end tag at byte offset {i}")));
                };
                if open.tag != name {
                    return Err(HtmlError(format!(
                        "Unmatched end tag at byte offset {i}, expected \"</{}>\", found \"</{name}>\"",
                        open.tag
                    )));
                }
                let language = (open.tag == "code")
                    .then(|| attr(&open, "class").and_then(|c| c.strip_prefix("language-")))
                    .flatten();
                if let (Some(lang), Some(pre)) = (language, stack.last_mut()) {
                    // `<pre><code class="language-x">…</code></pre>` names the pre's language.
                    if pre.tag == "pre" && pre.start == open.start {
                        pre.attrs.push((LANGUAGE.to_owned(), lang.to_owned()));
                        i += rel + 1;
                        continue;
                    }
                }
                if let Some(e) = close(&open, utf16, stack.len())? {
                    entities.push(e);
                }
                i += rel + 1;
            }
            b'<' => {
                let (open, next) = start_tag(input, i, utf16)?;
                stack.push(open);
                i = next;
            }
            _ => {
                // Copy one whole character (the input is valid UTF-8; `i` is on a boundary
                // because every branch above advances over ASCII bytes or whole characters).
                let Some(c) = input[i..].chars().next() else { break };
                text.push(c);
                utf16 += c.len_utf16();
                i += c.len_utf8();
            }
        }
    }
    if let Some(open) = stack.last() {
        return Err(HtmlError(format!(
            "Can't find end tag corresponding to start tag \"{}\"",
            open.tag
        )));
    }
    entities.sort_by_key(|(start, order, _)| (*start, *order));
    Ok(Parsed { text, entities: entities.into_iter().map(|(_, _, e)| e).collect() })
}

/// Decodes the character entity at `input[at]` (an `&`): `&lt;` `&gt;` `&amp;` `&quot;`,
/// `&#NNN;`, `&#xHH;`.
fn entity(input: &str, at: usize) -> Result<(char, usize), HtmlError> {
    let rest = &input[at + 1..];
    let end = rest
        .char_indices()
        .take(12)
        .find(|(_, c)| *c == ';')
        .map(|(k, _)| k)
        .ok_or_else(|| HtmlError(format!("Unescaped \"&\" at byte offset {at}")))?;
    let name = &rest[..end];
    let c = match name {
        "lt" => Some('<'),
        "gt" => Some('>'),
        "amp" => Some('&'),
        "quot" => Some('"'),
        _ => {
            if let Some(hex) = name.strip_prefix("#x").or_else(|| name.strip_prefix("#X")) {
                u32::from_str_radix(hex, 16).ok().and_then(char::from_u32)
            } else if let Some(dec) = name.strip_prefix('#') {
                dec.parse::<u32>().ok().and_then(char::from_u32)
            } else {
                None
            }
        }
    };
    match c {
        Some(c) if c != '\0' => Ok((c, at + 1 + end + 1)),
        _ => Err(HtmlError(format!("Unsupported HTML entity \"&{name};\" at byte offset {at}"))),
    }
}

/// Reads a start tag at `input[at]` (a `<`).
fn start_tag(input: &str, at: usize, utf16: usize) -> Result<(Open, usize), HtmlError> {
    let bytes = input.as_bytes();
    let mut i = at + 1;
    // As Telegram: the name runs to a space or `>`; a bare `<` has an empty name.
    while i < bytes.len() && !bytes[i].is_ascii_whitespace() && bytes[i] != b'>' {
        i += 1;
    }
    if i == bytes.len() {
        return Err(HtmlError(format!("Unclosed start tag at byte offset {at}")));
    }
    let tag = input[at + 1..i].to_ascii_lowercase();
    if !TAGS.contains(&tag.as_str()) {
        return Err(HtmlError(format!("Unsupported start tag \"{tag}\" at byte offset {at}")));
    }
    let mut attrs = Vec::new();
    loop {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        match bytes.get(i) {
            None => return Err(HtmlError(format!("Unclosed start tag at byte offset {at}"))),
            Some(b'>') => {
                i += 1;
                break;
            }
            Some(_) => {}
        }
        let name_start = i;
        while i < bytes.len()
            && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'-' || bytes[i] == b'_')
        {
            i += 1;
        }
        if i == name_start {
            return Err(HtmlError(format!(
                "Expected equal sign in declaration of attribute of the tag \"{tag}\" at byte offset {at}"
            )));
        }
        let name = input[name_start..i].to_ascii_lowercase();
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if bytes.get(i) != Some(&b'=') {
            // A value-less attribute (`<blockquote expandable>`).
            attrs.push((name, String::new()));
            continue;
        }
        i += 1;
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let raw = match bytes.get(i) {
            Some(q @ (b'"' | b'\'')) => {
                let Some(rel) = input[i + 1..].find(*q as char) else {
                    return Err(HtmlError(format!("Unclosed start tag at byte offset {at}")));
                };
                let v = &input[i + 1..i + 1 + rel];
                i += rel + 2;
                v
            }
            Some(_) => {
                // A name token: letters, digits, periods, hyphens.
                let s = i;
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'.' || bytes[i] == b'-')
                {
                    i += 1;
                }
                if i < bytes.len() && !bytes[i].is_ascii_whitespace() && bytes[i] != b'>' {
                    return Err(HtmlError(format!(
                        "Unexpected end of name token at byte offset {s}"
                    )));
                }
                &input[s..i]
            }
            None => return Err(HtmlError(format!("Unclosed start tag at byte offset {at}"))),
        };
        attrs.push((name, decode_attr(raw, at)?));
    }
    match tag.as_str() {
        "span" if !attrs.iter().any(|(k, v)| k == "class" && v == "tg-spoiler") => {
            return Err(HtmlError(format!(
                "Tag \"span\" must have class \"tg-spoiler\" at byte offset {at}"
            )));
        }
        "tg-emoji" if !attrs.iter().any(|(k, v)| k == "emoji-id" && !v.is_empty()) => {
            return Err(HtmlError(format!(
                "Tag \"tg-emoji\" must have attribute \"emoji-id\" at byte offset {at}"
            )));
        }
        _ => {}
    }
    Ok((Open { tag, at, start: utf16, attrs }, i))
}

fn decode_attr(raw: &str, at: usize) -> Result<String, HtmlError> {
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw.as_bytes()[i] == b'&' {
            let (c, next) = entity(raw, i)
                .map_err(|e| HtmlError(format!("{} (in the tag at byte offset {at})", e.0)))?;
            out.push(c);
            i = next;
        } else {
            let Some(c) = raw[i..].chars().next() else { break };
            out.push(c);
            i += c.len_utf8();
        }
    }
    Ok(out)
}

fn attr<'a>(open: &'a Open, name: &str) -> Option<&'a str> {
    open.attrs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// The entity a closed tag makes (`None` for an empty one). The tuple is (start, depth,
/// entity): outer entities sort first.
fn close(
    open: &Open,
    end: usize,
    order: usize,
) -> Result<Option<(usize, usize, Value)>, HtmlError> {
    let length = end - open.start;
    let base = |kind: &str| json!({"type": kind, "offset": open.start, "length": length});
    let mut e = match open.tag.as_str() {
        "b" | "strong" => base("bold"),
        "i" | "em" => base("italic"),
        "u" | "ins" => base("underline"),
        "s" | "strike" | "del" => base("strikethrough"),
        "span" | "tg-spoiler" => base("spoiler"),
        "a" => match attr(open, "href") {
            Some(href) if !href.is_empty() => {
                let mut e = base("text_link");
                e["url"] = Value::String(href.to_owned());
                e
            }
            _ => return Ok(None),
        },
        "code" => base("code"),
        "pre" => {
            let mut e = base("pre");
            if let Some(lang) = attr(open, LANGUAGE) {
                e["language"] = Value::String(lang.to_owned());
            }
            e
        }
        "blockquote" => {
            if open.attrs.iter().any(|(k, _)| k == "expandable") {
                base("expandable_blockquote")
            } else {
                base("blockquote")
            }
        }
        "tg-emoji" => {
            let mut e = base("custom_emoji");
            e["custom_emoji_id"] = Value::String(attr(open, "emoji-id").unwrap_or("").to_owned());
            e
        }
        other => {
            return Err(HtmlError(format!(
                "Unsupported start tag \"{other}\" at byte offset {}",
                open.at
            )));
        }
    };
    if length == 0 {
        return Ok(None);
    }
    if let Some(obj) = e.as_object_mut() {
        obj.retain(|_, v| !v.is_null());
    }
    Ok(Some((open.start, order, e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expect: Result<(&str, Value), &str>) {
        let got = parse(input);
        match (got, expect) {
            (Ok(p), Ok((text, ents))) => {
                assert_eq!(p.text, text, "{input}");
                assert_eq!(Value::Array(p.entities), ents, "{input}");
            }
            (Err(e), Err(prefix)) => assert!(e.0.starts_with(prefix), "{input}: {e}"),
            (got, expect) => panic!("{input}: got {got:?}, expected {expect:?}"),
        }
    }

    #[test]
    fn table() {
        check("plain", Ok(("plain", json!([]))));
        check(
            "<b>bold</b> &lt;x&gt; &amp; &quot;",
            Ok(("bold <x> & \"", json!([{"type":"bold","offset":0,"length":4}]))),
        );
        check("&#65;&#x42;", Ok(("AB", json!([]))));
        check(
            "<a href=\"https://x.y/?a=1&amp;b=2\">l</a>",
            Ok((
                "l",
                json!([{"type":"text_link","offset":0,"length":1,"url":"https://x.y/?a=1&b=2"}]),
            )),
        );
        check("😀<i>é</i>", Ok(("😀é", json!([{"type":"italic","offset":2,"length":1}]))));
        check(
            "<b><i>x</i></b>",
            Ok((
                "x",
                json!([{"type":"bold","offset":0,"length":1},{"type":"italic","offset":0,"length":1}]),
            )),
        );
        check(
            "<span class=\"tg-spoiler\">s</span><tg-spoiler>t</tg-spoiler>",
            Ok((
                "st",
                json!([{"type":"spoiler","offset":0,"length":1},{"type":"spoiler","offset":1,"length":1}]),
            )),
        );
        check(
            "<blockquote expandable>q</blockquote>",
            Ok(("q", json!([{"type":"expandable_blockquote","offset":0,"length":1}]))),
        );
        check(
            "<pre><code class=\"language-rust\">fn</code></pre><code>c</code>",
            Ok((
                "fnc",
                json!([{"type":"pre","offset":0,"length":2,"language":"rust"},{"type":"code","offset":2,"length":1}]),
            )),
        );
        check("a > b", Ok(("a > b", json!([]))));
        check("a < b", Err("Unsupported start tag \"\" at byte offset 2"));
        check("<b/>x</b>", Err("Unsupported start tag \"b/\""));
        check("<a href=x/y>l</a>", Err("Unexpected end of name token at byte offset 8"));
        check(
            "<a href=https>l</a>",
            Ok(("l", json!([{"type":"text_link","offset":0,"length":1,"url":"https"}]))),
        );
        check("AT&T", Err("Unescaped \"&\""));
        check("&nbsp;", Err("Unsupported HTML entity"));
        check("<div>x</div>", Err("Unsupported start tag \"div\""));
        check("<b>x", Err("Can't find end tag corresponding to start tag \"b\""));
        check("x</b>", Err("Unexpected end tag"));
        check("<b><i>x</b></i>", Err("Unmatched end tag"));
        check("<span>x</span>", Err("Tag \"span\" must have class"));
        check("<b", Err("Unclosed start tag"));
    }

    /// Every prefix of tricky inputs parses or fails, never panics (byte offsets stay on
    /// character boundaries).
    #[test]
    fn prefixes_never_panic() {
        let inputs = [
            "<a href=\"https://x/é?a=1&amp;b\">é😀</a> &#x1F600; <pre><code class=\"language-é\">x</code></pre>",
            "<tg-emoji emoji-id='1'>😀</tg-emoji><blockquote expandable>q</blockquote>&#0;&#xD800;&#99999999;",
            "</ > < b><b x=y z>é</b>&amp",
        ];
        for input in inputs {
            for (end, _) in input.char_indices() {
                let _ = parse(&input[..end]);
            }
            let _ = parse(input);
        }
        assert!(parse("&#0;").is_err(), "NUL is refused");
        assert!(parse("&#xD800;").is_err(), "a surrogate is not a character");
    }
}
