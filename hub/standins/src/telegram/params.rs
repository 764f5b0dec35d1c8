//! A method's parameters, read the four ways the Bot API accepts them: the query string, an
//! `application/json` body, `application/x-www-form-urlencoded`, and `multipart/form-data`
//! (where uploaded files arrive). Form and multipart values are strings; the typed getters
//! accept a string where Telegram does (`"123"` for an integer, a JSON string for an object).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::api::ApiError;

/// One uploaded file (a multipart part with a `filename`).
#[derive(Debug, Clone)]
pub struct Upload {
    /// The part's `filename`.
    pub file_name: String,
    /// Its bytes.
    pub data: Vec<u8>,
}

/// The parameters of one call.
#[derive(Debug, Default)]
pub struct Params {
    values: Map<String, Value>,
    files: BTreeMap<String, Upload>,
}

/// Reads the parameters of a request: the query string first, then the body (its values win).
pub fn read(
    query: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Params, ApiError> {
    let mut p = Params::default();
    if let Some(q) = query {
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            p.values.insert(k.into_owned(), Value::String(v.into_owned()));
        }
    }
    let ct = content_type.unwrap_or("").to_ascii_lowercase();
    let mime = ct.split(';').next().unwrap_or("").trim().to_owned();
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(p);
    }
    match mime.as_str() {
        "application/json" => {
            let v: Value = serde_json::from_slice(body)
                .map_err(|_| ApiError::bad("can't parse JSON object"))?;
            let Value::Object(m) = v else {
                return Err(ApiError::bad("JSON object expected"));
            };
            p.values.extend(m);
        }
        "application/x-www-form-urlencoded" | "" => {
            for (k, v) in form_urlencoded::parse(body) {
                p.values.insert(k.into_owned(), Value::String(v.into_owned()));
            }
        }
        "multipart/form-data" => {
            let boundary = content_type
                .unwrap_or("")
                .split(';')
                .filter_map(|kv| kv.trim().split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
                .map(|(_, v)| v.trim().trim_matches('"').to_owned())
                .ok_or_else(|| ApiError::bad("multipart boundary is missing"))?;
            for part in multipart(body, &boundary)? {
                match part.file_name {
                    Some(file_name) => {
                        p.files.insert(part.name, Upload { file_name, data: part.data });
                    }
                    None => {
                        let v = String::from_utf8(part.data)
                            .map_err(|_| ApiError::bad("strings must be encoded in UTF-8"))?;
                        p.values.insert(part.name, Value::String(v));
                    }
                }
            }
        }
        _ => return Err(ApiError::bad("unsupported Content-Type")),
    }
    Ok(p)
}

struct Part {
    name: String,
    file_name: Option<String>,
    data: Vec<u8>,
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || from > hay.len() {
        return None;
    }
    hay[from..].windows(needle.len()).position(|w| w == needle).map(|p| p + from)
}

fn header_param(line: &str, key: &str) -> Option<String> {
    line.split(';').filter_map(|kv| kv.trim().split_once('=')).find_map(|(k, v)| {
        k.trim().eq_ignore_ascii_case(key).then(|| v.trim().trim_matches('"').to_owned())
    })
}

/// Splits a multipart/form-data body (RFC 7578) into its parts.
fn multipart(body: &[u8], boundary: &str) -> Result<Vec<Part>, ApiError> {
    let malformed = || ApiError::bad("can't parse multipart/form-data body");
    let delim = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut at = find(body, delim.as_bytes(), 0).ok_or_else(malformed)? + delim.len();
    loop {
        if body[at..].starts_with(b"--") {
            return Ok(parts);
        }
        // Skip the line end after the delimiter.
        at = find(body, b"\r\n", at).ok_or_else(malformed)? + 2;
        let head_end = find(body, b"\r\n\r\n", at).ok_or_else(malformed)?;
        let head = std::str::from_utf8(&body[at..head_end]).map_err(|_| malformed())?;
        let next_delim = format!("\r\n{delim}");
        let data_end = find(body, next_delim.as_bytes(), head_end + 4).ok_or_else(malformed)?;
        let disposition = head
            .split("\r\n")
            .find(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))
            .ok_or_else(malformed)?;
        let name = header_param(disposition, "name").ok_or_else(malformed)?;
        let file_name = header_param(disposition, "filename");
        parts.push(Part { name, file_name, data: body[head_end + 4..data_end].to_vec() });
        at = data_end + next_delim.len();
        if at > body.len() {
            return Err(malformed());
        }
    }
}

impl Params {
    /// The parameters as one JSON object for the call log (uploads as `{"file","bytes"}`).
    pub fn to_log(&self) -> Value {
        let mut m = self.values.clone();
        for (k, f) in &self.files {
            m.insert(k.clone(), serde_json::json!({"file": f.file_name, "bytes": f.data.len()}));
        }
        Value::Object(m)
    }

    /// Whether the parameter is present (as a value or an upload).
    pub fn has(&self, name: &str) -> bool {
        self.values.get(name).is_some_and(|v| !v.is_null()) || self.files.contains_key(name)
    }

    /// The uploaded file under `name`, if any.
    pub fn file(&self, name: &str) -> Option<&Upload> {
        self.files.get(name)
    }

    fn raw(&self, name: &str) -> Option<&Value> {
        self.values.get(name).filter(|v| !v.is_null())
    }

    /// A string parameter (a number is taken as its decimal text, as Telegram does).
    pub fn str(&self, name: &str) -> Result<Option<String>, ApiError> {
        match self.raw(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(_) => Err(ApiError::bad(&format!("field \"{name}\" must be of type String"))),
        }
    }

    /// An integer parameter.
    pub fn int(&self, name: &str) -> Result<Option<i64>, ApiError> {
        let bad = || ApiError::bad(&format!("field \"{name}\" must be of type Integer"));
        match self.raw(name) {
            None => Ok(None),
            Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(bad),
            Some(Value::String(s)) => s.trim().parse::<i64>().map(Some).map_err(|_| bad()),
            Some(_) => Err(bad()),
        }
    }

    /// A boolean parameter (`true`/`false`, or `"true"`/`"false"`/`"1"`/`"0"` in a form).
    pub fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        let bad = || ApiError::bad(&format!("field \"{name}\" must be of type Boolean"));
        match self.raw(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) => match s.trim() {
                "true" | "True" | "1" => Ok(Some(true)),
                "false" | "False" | "0" | "" => Ok(Some(false)),
                _ => Err(bad()),
            },
            Some(Value::Number(n)) => Ok(Some(n.as_i64() != Some(0))),
            Some(_) => Err(bad()),
        }
    }

    /// A JSON-serialised parameter (an object or array; a string is parsed as JSON).
    pub fn json(&self, name: &str, what: &str) -> Result<Option<Value>, ApiError> {
        match self.raw(name) {
            None => Ok(None),
            Some(Value::String(s)) => serde_json::from_str::<Value>(s)
                .map(Some)
                .map_err(|_| ApiError::bad(&format!("can't parse {what}"))),
            Some(v) => Ok(Some(v.clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = "--XyZ\r\nContent-Disposition: form-data; name=\"chat_id\"\r\n\r\n42\r\n--XyZ\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"c.png\"\r\nContent-Type: image/png\r\n\r\n\x01\x02\r\n--XyZ--\r\n";

    #[test]
    fn multipart_parts_and_files() {
        let p = read(None, Some("multipart/form-data; boundary=XyZ"), BODY.as_bytes()).unwrap();
        assert_eq!(p.int("chat_id").unwrap(), Some(42));
        let f = p.file("photo").unwrap();
        assert_eq!((f.file_name.as_str(), f.data.as_slice()), ("c.png", &[1u8, 2][..]));
    }

    /// Every truncation of a multipart body is an error or a parse, never a panic.
    #[test]
    fn truncated_multipart_never_panics() {
        let ct = Some("multipart/form-data; boundary=XyZ");
        for end in 0..BODY.len() {
            let _ = read(None, ct, &BODY.as_bytes()[..end]);
        }
        assert!(read(None, ct, &BODY.as_bytes()[..BODY.len() - 12]).is_err());
        assert!(read(None, Some("multipart/form-data"), BODY.as_bytes()).is_err());
    }

    #[test]
    fn typed_values_from_strings() {
        let p = read(Some("a=1&b=true&c=%7B%22k%22%3A1%7D&d=x"), None, b"").unwrap();
        assert_eq!(p.int("a").unwrap(), Some(1));
        assert_eq!(p.bool("b").unwrap(), Some(true));
        assert_eq!(p.json("c", "c").unwrap(), Some(serde_json::json!({"k": 1})));
        assert!(p.int("d").is_err());
        assert!(p.bool("d").is_err());
        assert_eq!(p.str("missing").unwrap(), None);
    }
}
