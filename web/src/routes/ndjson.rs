//! A JSON array or NDJSON body of documents, checked and rewritten as NDJSON one document at a
//! time. The body never becomes a `Vec<Value>` (a 50 MB array of numbers took the server to
//! 2.1 GB that way): the array is read element by element, and the first element that is not
//! a document ends the read.

use crate::error::{ApiError, ApiResult};
use serde::de::{Deserializer as _, SeqAccess, Visitor};
use serde_json::Value;
use std::cell::RefCell;

/// Validates JSON documents (an array, or NDJSON) and writes them as NDJSON.
pub(super) fn documents_to_ndjson(body: &[u8], content_type: &str) -> ApiResult<Vec<u8>> {
    let text = std::str::from_utf8(body).map_err(|_| ApiError::bad_request("bad_json", "the body is not UTF-8"))?;
    let trimmed = text.trim_start();
    let mut out = Vec::with_capacity(body.len());
    let mut count = 0;
    if trimmed.starts_with('[') {
        let failure = RefCell::new(None);
        let mut de = serde_json::Deserializer::from_str(text);
        let read = de.deserialize_seq(Docs { out: &mut out, count: &mut count, failure: &failure });
        if let Some(e) = failure.into_inner() {
            return Err(e);
        }
        read.and_then(|()| de.end())
            .map_err(|e| ApiError::bad_request("bad_json", format!("invalid JSON body: {e}")))?;
    } else {
        if !(content_type.contains("ndjson") || content_type.contains("jsonl") || trimmed.starts_with('{')) {
            return Err(ApiError::bad_request(
                "bad_json",
                "send a JSON array of documents, NDJSON, or multipart/form-data files",
            ));
        }
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let d: Value = serde_json::from_str(line)
                .map_err(|e| ApiError::bad_request("bad_json", format!("line {}: invalid JSON: {e}", i + 1)))?;
            write_doc(count, &d, &mut out)?;
            count += 1;
        }
    }
    if count == 0 {
        return Err(ApiError::bad_request("no_documents", "the body holds no documents"));
    }
    Ok(out)
}

/// Reads an array's elements one at a time into `out`; a bad one is left in `failure`.
struct Docs<'a> {
    out: &'a mut Vec<u8>,
    count: &'a mut usize,
    failure: &'a RefCell<Option<ApiError>>,
}

impl<'de> Visitor<'de> for Docs<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of documents")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(d) = seq.next_element::<Value>()? {
            if let Err(e) = write_doc(*self.count, &d, self.out) {
                *self.failure.borrow_mut() = Some(e);
                return Err(serde::de::Error::custom("not a document"));
            }
            *self.count += 1;
        }
        Ok(())
    }
}

/// Checks document `i` (an object with an id and a text) and appends it as one NDJSON line.
fn write_doc(i: usize, d: &Value, out: &mut Vec<u8>) -> ApiResult<()> {
    let Some(obj) = d.as_object() else {
        return Err(ApiError::bad_request("bad_document", format!("document {i} is not a JSON object")));
    };
    let id_ok = match obj.get("id").or_else(|| obj.get("_id")) {
        Some(Value::String(s)) => !s.trim().is_empty(),
        Some(Value::Number(_)) => true,
        _ => false,
    };
    if !id_ok {
        return Err(ApiError::bad_request("bad_document", format!("document {i} has no \"id\" (string or number)")));
    }
    let has_text = ["text", "body", "content"].iter().any(|k| obj.get(*k).is_some_and(|v| v.is_string()));
    if !has_text {
        return Err(ApiError::bad_request("bad_document", format!("document {i} has no \"text\" string")));
    }
    serde_json::to_writer(&mut *out, d).map_err(|e| ApiError::internal(e.to_string()))?;
    out.push(b'\n');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_and_ndjson_become_ndjson_and_bad_elements_stop_the_read() {
        let out =
            documents_to_ndjson(br#"[{"id": 1, "text": "a"}, {"id": "b", "body": "c"}]"#, "application/json").unwrap();
        assert_eq!(String::from_utf8(out).unwrap().lines().count(), 2);
        let out = documents_to_ndjson(
            b"{\"id\": 1, \"text\": \"a\"}\n\n{\"id\": 2, \"text\": \"b\"}\n",
            "application/x-ndjson",
        )
        .unwrap();
        assert_eq!(String::from_utf8(out).unwrap().lines().count(), 2);
        // Numbers are not documents: the first one ends the read, whatever follows.
        let numbers = format!("[{}]", vec!["1"; 100_000].join(","));
        let e = documents_to_ndjson(numbers.as_bytes(), "application/json").unwrap_err();
        assert!(e.message.contains("document 0 is not a JSON object"), "{}", e.message);
        let e = documents_to_ndjson(br#"[{"id": 1, "text": "a"}, {"id": 2}]"#, "application/json").unwrap_err();
        assert!(e.message.contains("document 1 has no"), "{}", e.message);
        for bad in [&b"[{\"id\": 1, \"text\": \"a\"}"[..], b"[] x", b"[]"] {
            assert!(documents_to_ndjson(bad, "application/json").is_err());
        }
    }
}
