//! The JSON Canonicalization Scheme (JCS, RFC 8785): one byte-exact text
//! for a JSON value, so that a signature over it survives any re-encoding
//! (key order, white space, number and string spelling).
//!
//! ```
//! use serde_json::json;
//! let v = json!({"b": [1.50, 1e21, "\u{20ac}"], "a": null});
//! assert_eq!(
//!     sentryagent_core::jcs::canonicalize(&v).unwrap(),
//!     r#"{"a":null,"b":[1.5,1e+21,"€"]}"#
//! );
//! ```
//!
//! Object members are sorted by their names as UTF-16 code units, strings
//! are escaped as ECMAScript's `JSON.stringify` escapes them, and numbers are
//! written as ECMAScript writes an IEEE 754 double (`Number.prototype.toString`).

use std::fmt::Write as _;

use serde_json::{Number, Value};

/// Why a value has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JcsError {
    /// An integer that an IEEE 754 double cannot hold exactly (RFC 8785
    /// §3.2.2.3: JSON numbers are doubles).
    #[error("the number {0} cannot be represented exactly as an IEEE 754 double")]
    InexactNumber(String),
}

/// The canonical text of `value` (RFC 8785).
pub fn canonicalize(value: &Value) -> Result<String, JcsError> {
    let mut out = String::new();
    write_value(&mut out, value)?;
    Ok(out)
}

fn write_value(out: &mut String, value: &Value) -> Result<(), JcsError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(out, n)?,
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item)?;
            }
            out.push(']');
        }
        Value::Object(members) => {
            let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
            sorted.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
            out.push('{');
            for (i, (name, member)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, name);
                out.push(':');
                write_value(out, member)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

/// A string as `JSON.stringify` writes it: `"` and `\` escaped, the
/// control characters U+0000 to U+001F as `\b \t \n \f \r` or `\u00xx`
/// (lower-case hex), everything else as itself.
fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write_number(out: &mut String, n: &Number) -> Result<(), JcsError> {
    let x = if let Some(i) = n.as_i64() {
        exact_double(i.unsigned_abs(), n)?;
        i as f64
    } else if let Some(u) = n.as_u64() {
        exact_double(u, n)?;
        u as f64
    } else {
        // serde_json holds every other number as a finite f64.
        n.as_f64().unwrap_or(0.0)
    };
    write_double(out, x);
    Ok(())
}

/// Refuses an integer that a double does not hold exactly.
fn exact_double(magnitude: u64, n: &Number) -> Result<(), JcsError> {
    // A double holds every integer up to 2^53, and beyond that those with
    // enough trailing zero bits.
    let significant = 64 - magnitude.leading_zeros() - magnitude.trailing_zeros();
    if magnitude > (1 << 53) && significant > 53 {
        return Err(JcsError::InexactNumber(n.to_string()));
    }
    Ok(())
}

/// ECMAScript's `Number.prototype.toString(10)` of a finite double
/// (ECMA-262 `Number::toString`), from the shortest digits that round-trip.
fn write_double(out: &mut String, x: f64) {
    if x == 0.0 {
        // Both zeros.
        out.push('0');
        return;
    }
    if x < 0.0 {
        out.push('-');
    }
    // Ryu gives the shortest digits that round-trip and, of two such,
    // the closer one (the even one on a tie), as ECMAScript asks; its text
    // is `ddd.ddd` or `d.ddde<exp>`.
    let mut buf = ryu::Buffer::new();
    let text = buf.format_finite(x.abs());
    let (mantissa, exp) = text.split_once('e').unwrap_or((text, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all = format!("{int}{frac}");
    let lead = all.len() - all.trim_start_matches('0').len();
    let digits = all.trim_start_matches('0').trim_end_matches('0').to_owned();
    let exp = i32::try_from(int.len()).unwrap_or(0) + exp - i32::try_from(lead).unwrap_or(0) - 1;
    // The value is 0.d1d2...dk × 10^n.
    let k = i32::try_from(digits.len()).unwrap_or(i32::MAX);
    let n = exp + 1;
    if k <= n && n <= 21 {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', (n - k) as usize));
    } else if 0 < n && n <= 21 {
        let (int, frac) = digits.split_at(n as usize);
        out.push_str(int);
        out.push('.');
        out.push_str(frac);
    } else if -6 < n && n <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-n) as usize));
        out.push_str(&digits);
    } else {
        let (first, rest) = digits.split_at(1);
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        let e = n - 1;
        let _ = write!(out, "e{}{}", if e < 0 { '-' } else { '+' }, e.abs());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn number(x: f64) -> String {
        let mut s = String::new();
        write_double(&mut s, x);
        s
    }

    /// RFC 8785 Appendix B: IEEE 754 doubles and their canonical text.
    #[test]
    fn numbers_follow_the_rfc_8785_appendix_b_table() {
        for (bits, text) in [
            (0x0000_0000_0000_0000_u64, "0"),
            (0x8000_0000_0000_0000, "0"),
            (0x0000_0000_0000_0001, "5e-324"),
            (0x8000_0000_0000_0001, "-5e-324"),
            (0x7fef_ffff_ffff_ffff, "1.7976931348623157e+308"),
            (0xffef_ffff_ffff_ffff, "-1.7976931348623157e+308"),
            (0x4340_0000_0000_0000, "9007199254740992"),
            (0xc340_0000_0000_0000, "-9007199254740992"),
            (0x4430_0000_0000_0000, "295147905179352830000"),
            (0x44b5_2d02_c7e1_4af5, "9.999999999999997e+22"),
            (0x44b5_2d02_c7e1_4af6, "1e+23"),
            (0x44b5_2d02_c7e1_4af7, "1.0000000000000001e+23"),
            (0x444b_1ae4_d6e2_ef4e, "999999999999999700000"),
            (0x444b_1ae4_d6e2_ef4f, "999999999999999900000"),
            (0x444b_1ae4_d6e2_ef50, "1e+21"),
            (0x3eb0_c6f7_a0b5_ed8c, "9.999999999999997e-7"),
            (0x3eb0_c6f7_a0b5_ed8d, "0.000001"),
            (0x41b3_de43_5555_5553, "333333333.3333332"),
            (0x41b3_de43_5555_5554, "333333333.33333325"),
            (0x41b3_de43_5555_5555, "333333333.3333333"),
            (0x41b3_de43_5555_5556, "333333333.3333334"),
            (0x41b3_de43_5555_5557, "333333333.33333343"),
            (0xbecb_f647_612f_3696, "-0.0000033333333333333333"),
            (0x4314_3ff3_c1cb_0959, "1424953923781206.2"),
        ] {
            assert_eq!(number(f64::from_bits(bits)), text, "{bits:#018x}");
        }
    }

    /// RFC 8785 §3.2.2 and §3.2.3: the example of the specification.
    #[test]
    fn the_rfc_example_canonicalizes_as_published() {
        let input = r#"{
          "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
          "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
          "literals": [null, true, false]
        }"#;
        let v: Value = serde_json::from_str(input).unwrap();
        assert_eq!(
            canonicalize(&v).unwrap(),
            r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );
    }

    #[test]
    fn members_sort_by_utf16_code_units() {
        let input = r#"{
          "\u20ac": "Euro Sign",
          "\r": "Carriage Return",
          "\ufb33": "Hebrew Letter Dalet With Dagesh",
          "1": "One",
          "\ud83d\ude00": "Emoji: Grinning Face",
          "\u0080": "Control",
          "\u00f6": "Latin Small Letter O With Diaeresis"
        }"#;
        let v: Value = serde_json::from_str(input).unwrap();
        let names: Vec<String> = {
            let text = canonicalize(&v).unwrap();
            let back: serde_json::Map<String, Value> = serde_json::from_str(&text).unwrap();
            // Read the order back from the text itself.
            let mut found: Vec<(usize, String)> = back
                .keys()
                .map(|k| {
                    (
                        text.find(&format!("{}:", serde_json::to_string(k).unwrap()))
                            .unwrap(),
                        k.clone(),
                    )
                })
                .collect();
            found.sort();
            found.into_iter().map(|(_, k)| k).collect()
        };
        assert_eq!(
            names,
            [
                "\r",
                "1",
                "\u{80}",
                "\u{f6}",
                "\u{20ac}",
                "\u{1f600}",
                "\u{fb33}"
            ]
        );
    }

    #[test]
    fn nested_values_and_integers() {
        let v = json!({"z": {"b": [], "a": {}}, "a": [-0.0, 10, -7, 1e-7, 123e-20, 1.5e300]});
        assert_eq!(
            canonicalize(&v).unwrap(),
            r#"{"a":[0,10,-7,1e-7,1.23e-18,1.5e+300],"z":{"a":{},"b":[]}}"#
        );
        // Integers a double holds exactly pass; others are refused.
        // 2^60 is a double: written as ECMAScript writes that double.
        assert_eq!(
            canonicalize(&json!(1_u64 << 60)).unwrap(),
            "1152921504606847000"
        );
        assert_eq!(
            canonicalize(&json!(9_007_199_254_740_993_u64)),
            Err(JcsError::InexactNumber("9007199254740993".into()))
        );
        assert_eq!(
            canonicalize(&json!(-9_007_199_254_740_992_i64)).unwrap(),
            "-9007199254740992"
        );
    }
}
