//! Stripe's form encoding (`a[b][0][c]=v`, `a[]=v`) read into a JSON tree, with the parameter
//! checks Stripe makes: an unknown parameter, a missing one, a value of the wrong kind.

use serde_json::{Map, Value};

use super::api::ApiError;

/// The parameters of one request, in order, and their tree.
#[derive(Debug, Clone, Default)]
pub struct Params {
    /// The decoded pairs as sent.
    pub pairs: Vec<(String, String)>,
    /// `a[b][0]=v` as `{"a":{"b":["v"]}}`.
    pub tree: Map<String, Value>,
}

fn segments(key: &str) -> Option<Vec<String>> {
    let (head, mut rest) = match key.find('[') {
        Some(i) => (&key[..i], &key[i..]),
        None => (key, ""),
    };
    if head.is_empty() {
        return None;
    }
    let mut out = vec![head.to_owned()];
    while !rest.is_empty() {
        let r = rest.strip_prefix('[')?;
        let end = r.find(']')?;
        out.push(r[..end].to_owned());
        rest = &r[end + 1..];
    }
    Some(out)
}

/// Normalizes a parameter's path for matching: indices (`0`, empty) become `#`.
fn shape(segs: &[String]) -> Vec<String> {
    segs.iter()
        .enumerate()
        .map(|(i, s)| {
            if i > 0 && (s.is_empty() || s.bytes().all(|b| b.is_ascii_digit())) {
                "#".to_owned()
            } else {
                s.clone()
            }
        })
        .collect()
}

fn matches(pattern: &str, shape: &[String]) -> bool {
    let p: Vec<&str> = pattern.split('.').collect();
    p.len() == shape.len() && p.iter().zip(shape).all(|(p, s)| *p == "*" || *p == s)
}

fn insert(node: &mut Map<String, Value>, segs: &[String], value: &str) {
    let Some((first, rest)) = segs.split_first() else { return };
    let key = if first.is_empty() { node.len().to_string() } else { first.clone() };
    if rest.is_empty() {
        node.insert(key, Value::String(value.to_owned()));
        return;
    }
    let child = node.entry(key).or_insert_with(|| Value::Object(Map::new()));
    if !child.is_object() {
        *child = Value::Object(Map::new());
    }
    if let Value::Object(m) = child {
        insert(m, rest, value);
    }
}

/// Objects whose keys are all indices become arrays (in index order).
fn arrays(v: Value, under_metadata: bool) -> Value {
    match v {
        Value::Object(m) => {
            let all_idx = !under_metadata
                && !m.is_empty()
                && m.keys().all(|k| k.bytes().all(|b| b.is_ascii_digit()));
            if all_idx {
                let mut items: Vec<(u64, Value)> = m
                    .into_iter()
                    .map(|(k, v)| (k.parse().unwrap_or(u64::MAX), arrays(v, false)))
                    .collect();
                items.sort_by_key(|(k, _)| *k);
                Value::Array(items.into_iter().map(|(_, v)| v).collect())
            } else {
                Value::Object(
                    m.into_iter()
                        .map(|(k, v)| {
                            let meta = k == "metadata";
                            (k, arrays(v, meta))
                        })
                        .collect(),
                )
            }
        }
        v => v,
    }
}

impl Params {
    /// Parses an `application/x-www-form-urlencoded` body or query string and checks every
    /// parameter against `allowed` (dot paths; `*` any key, `#` an index).
    pub fn parse(raw: &[u8], allowed: &[&str]) -> Result<Params, ApiError> {
        let pairs: Vec<(String, String)> =
            form_urlencoded::parse(raw).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        let mut root = Map::new();
        for (k, v) in &pairs {
            let segs = segments(k).ok_or_else(|| {
                ApiError::invalid(format!("Invalid parameter name: {k}"), Some(k))
            })?;
            let sh = shape(&segs);
            if !allowed.iter().any(|p| matches(p, &sh)) {
                return Err(ApiError::unknown_parameter(k));
            }
            insert(&mut root, &segs, v);
        }
        let tree = match arrays(Value::Object(root), false) {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        Ok(Params { pairs, tree })
    }

    /// A canonical string of the parameters, for idempotency comparisons.
    pub fn fingerprint(&self) -> String {
        let mut p = self.pairs.clone();
        p.sort();
        p.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
    }

    fn at(&self, path: &str) -> Option<&Value> {
        let mut it = path.split('.');
        let mut cur = self.tree.get(it.next()?)?;
        for s in it {
            cur = match cur {
                Value::Object(m) => m.get(s)?,
                Value::Array(a) => a.get(s.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(cur)
    }

    /// Whether a parameter is present.
    pub fn has(&self, path: &str) -> bool {
        self.at(path).is_some()
    }

    /// A string parameter (`a.b` for `a[b]`).
    pub fn str(&self, path: &str) -> Result<Option<String>, ApiError> {
        match self.at(path) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(ApiError::invalid(
                format!("Invalid string: {}", bracket(path)),
                Some(&bracket(path)),
            )),
        }
    }

    /// A required string parameter.
    pub fn req(&self, path: &str) -> Result<String, ApiError> {
        match self.str(path)? {
            Some(s) if !s.is_empty() => Ok(s),
            _ => Err(ApiError::missing(&bracket(path))),
        }
    }

    /// An integer parameter.
    pub fn int(&self, path: &str) -> Result<Option<i64>, ApiError> {
        match self.str(path)? {
            None => Ok(None),
            Some(s) => s.parse().map(Some).map_err(|_| {
                ApiError::invalid_code(
                    "parameter_invalid_integer",
                    format!("Invalid integer: {s}"),
                    &bracket(path),
                )
            }),
        }
    }

    /// A boolean parameter (`true`/`false`).
    pub fn bool(&self, path: &str) -> Result<Option<bool>, ApiError> {
        match self.str(path)?.as_deref() {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(s) => {
                Err(ApiError::invalid(format!("Invalid boolean: {s}"), Some(&bracket(path))))
            }
        }
    }

    /// A `metadata`-like map of strings.
    pub fn map(&self, path: &str) -> Result<Map<String, Value>, ApiError> {
        match self.at(path) {
            None => Ok(Map::new()),
            Some(Value::Object(m)) => {
                if m.len() > 50 {
                    return Err(ApiError::invalid(
                        "Metadata can have at most 50 keys.".into(),
                        Some(&bracket(path)),
                    ));
                }
                Ok(m.iter()
                    .filter(|(_, v)| v.as_str().is_some_and(|s| !s.is_empty()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect())
            }
            // `metadata=` (empty) unsets everything.
            Some(Value::String(s)) if s.is_empty() => Ok(Map::new()),
            Some(_) => Err(ApiError::invalid("Invalid hash".into(), Some(&bracket(path)))),
        }
    }

    /// An array of strings (`a[]=x&a[]=y` or `a[0]=x`).
    pub fn list(&self, path: &str) -> Result<Vec<String>, ApiError> {
        match self.at(path) {
            None => Ok(Vec::new()),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str().map(str::to_owned).ok_or_else(|| {
                        ApiError::invalid("Invalid array".into(), Some(&bracket(path)))
                    })
                })
                .collect(),
            Some(_) => Err(ApiError::invalid("Invalid array".into(), Some(&bracket(path)))),
        }
    }
}

/// `a.b.0` → `a[b][0]` (how Stripe names a parameter in its errors).
pub fn bracket(path: &str) -> String {
    let mut it = path.split('.');
    let mut out = it.next().unwrap_or_default().to_owned();
    for s in it {
        out.push('[');
        out.push_str(s);
        out.push(']');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_syntax() {
        let p = Params::parse(
            b"line_items[0][price]=p1&line_items[0][quantity]=1&metadata[a]=b&expand[]=x&expand[]=y&lookup_keys%5B0%5D=k",
            &["line_items.#.price", "line_items.#.quantity", "metadata.*", "expand.#", "lookup_keys.#"],
        )
        .unwrap();
        assert_eq!(p.str("line_items.0.price").unwrap().as_deref(), Some("p1"));
        assert_eq!(p.int("line_items.0.quantity").unwrap(), Some(1));
        assert_eq!(p.list("expand").unwrap(), vec!["x", "y"]);
        assert_eq!(p.list("lookup_keys").unwrap(), vec!["k"]);
        assert_eq!(p.map("metadata").unwrap().get("a").and_then(|v| v.as_str()), Some("b"));
        let e = Params::parse(b"line_items[0][prize]=p1", &["line_items.#.price"]).unwrap_err();
        assert_eq!(e.code.as_deref(), Some("parameter_unknown"));
        assert_eq!(e.message, "Received unknown parameter: line_items[0][prize]");
    }
}
