//! A tiny JSON Schema checker for the subset `schema/info.schema.json` uses: `type`,
//! `required`, `properties`, `additionalProperties`, `items`, `enum`, `minimum`, `maximum`.
//! Any other constraint keyword makes it panic, so a schema edit can never be silently ignored.
#![allow(dead_code)]

use serde_json::Value;

const ANNOTATIONS: [&str; 4] = ["$schema", "$id", "title", "description"];
const SUPPORTED: [&str; 8] =
    ["type", "required", "properties", "additionalProperties", "items", "enum", "minimum", "maximum"];

pub fn info_schema() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema/info.schema.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("the /info schema is in the repo"))
        .expect("the /info schema is JSON")
}

/// Every violation, as `<JSON pointer>: <what is wrong>`; empty when `doc` is valid.
pub fn validate(schema: &Value, doc: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    check(schema, doc, "", &mut errors);
    errors
}

fn check(schema: &Value, doc: &Value, at: &str, errors: &mut Vec<String>) {
    let Some(schema) = schema.as_object() else { panic!("{at}: a schema must be an object") };
    for key in schema.keys() {
        assert!(
            ANNOTATIONS.contains(&key.as_str()) || SUPPORTED.contains(&key.as_str()),
            "{at}: schema keyword {key:?} is not supported by this checker"
        );
    }
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => panic!("{at}: bad type keyword"),
        };
        if !types.iter().any(|t| has_type(doc, t)) {
            errors.push(format!("{at}: expected {types:?}, got {doc}"));
            return;
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        if !options.contains(doc) {
            errors.push(format!("{at}: {doc} is not one of {options:?}"));
        }
    }
    if let Some(n) = doc.as_f64() {
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
            if n < min {
                errors.push(format!("{at}: {n} < minimum {min}"));
            }
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
            if n > max {
                errors.push(format!("{at}: {n} > maximum {max}"));
            }
        }
    }
    if let Some(obj) = doc.as_object() {
        for key in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
            let key = key.as_str().expect("required names are strings");
            if !obj.contains_key(key) {
                errors.push(format!("{at}: missing required property {key:?}"));
            }
        }
        let props = schema.get("properties").and_then(Value::as_object);
        for (key, value) in obj {
            let here = format!("{at}/{key}");
            match (props.and_then(|p| p.get(key)), schema.get("additionalProperties")) {
                (Some(sub), _) => check(sub, value, &here, errors),
                (None, Some(Value::Bool(false))) => errors.push(format!("{here}: property not allowed")),
                (None, Some(sub @ Value::Object(_))) => check(sub, value, &here, errors),
                (None, _) => {}
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), doc.as_array()) {
        for (i, value) in arr.iter().enumerate() {
            check(items, value, &format!("{at}/{i}"), errors);
        }
    }
}

fn has_type(doc: &Value, t: &str) -> bool {
    match t {
        "object" => doc.is_object(),
        "array" => doc.is_array(),
        "string" => doc.is_string(),
        "boolean" => doc.is_boolean(),
        "null" => doc.is_null(),
        "number" => doc.is_number(),
        "integer" => doc.is_i64() || doc.is_u64(),
        other => panic!("unknown type {other:?}"),
    }
}
