//! Sizes in bytes as people write them: `"256 MiB"`, `"8GiB"`, `"64 KB"` or a plain integer.
//!
//! The one parser of sizes in statekit (configuration files, profiles, command-line flags):
//! the text is read by the `bytesize` crate, so units follow it (`KB` = 1000, `KiB` = 1024,
//! up to exa; a fraction such as `"1.5 MiB"` is allowed). [`Size`] prints back in the largest
//! binary unit that divides it exactly (`"3 GiB"`, else plain bytes), so a written
//! configuration reads back to the same value.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A size in bytes, written in TOML as an integer or a string with a unit.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(try_from = "SizeRepr", into = "String")]
pub struct Size(pub u64);

#[derive(Deserialize)]
#[serde(untagged)]
enum SizeRepr {
    Int(u64),
    Text(String),
}

impl TryFrom<SizeRepr> for Size {
    type Error = String;
    fn try_from(repr: SizeRepr) -> std::result::Result<Self, String> {
        match repr {
            SizeRepr::Int(n) => Ok(Size(n)),
            SizeRepr::Text(s) => s.parse(),
        }
    }
}

impl FromStr for Size {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let text = s.trim();
        // bytesize saturates instead of failing; a size past u64 is a typo, not a request.
        let digits = text
            .split(|c: char| !(c.is_ascii_digit() || c == '.'))
            .next()
            .unwrap_or_default();
        if digits.parse::<f64>().is_ok_and(|n| n >= u64::MAX as f64) {
            return Err(format!("'{s}' is out of range"));
        }
        text.parse::<bytesize::ByteSize>()
            .map(|b| Size(b.as_u64()))
            .map_err(|e| format!("'{s}' is not a size (write for example \"256 MiB\"): {e}"))
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let units = [
            (1u64 << 40, "TiB"),
            (1 << 30, "GiB"),
            (1 << 20, "MiB"),
            (1 << 10, "KiB"),
        ];
        for (mult, unit) in units {
            if self.0 >= mult && self.0 % mult == 0 {
                return write!(f, "{} {unit}", self.0 / mult);
            }
        }
        write!(f, "{} B", self.0)
    }
}

impl From<Size> for String {
    fn from(s: Size) -> String {
        s.to_string()
    }
}

impl From<Size> for u64 {
    fn from(s: Size) -> u64 {
        s.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units_and_print_back() {
        assert_eq!("1 GiB".parse::<Size>().unwrap(), Size(1 << 30));
        assert_eq!("256MiB".parse::<Size>().unwrap(), Size(256 << 20));
        assert_eq!(" 64KB ".parse::<Size>().unwrap(), Size(64_000));
        assert_eq!("1.5 MiB".parse::<Size>().unwrap(), Size(3 << 19));
        assert_eq!("4096".parse::<Size>().unwrap(), Size(4096));
        assert_eq!("0 B".parse::<Size>().unwrap(), Size(0));
        for bad in ["12 parsecs", "lots", "", "99999999999999999999999 GiB"] {
            let e = bad.parse::<Size>().unwrap_err();
            assert!(e.contains(bad.trim()), "{e}");
        }
        assert_eq!(Size(3 << 30).to_string(), "3 GiB");
        assert_eq!(Size(1000).to_string(), "1000 B");
        for size in [Size(0), Size(1 << 20), Size(12345), Size(5 << 40)] {
            assert_eq!(size.to_string().parse::<Size>().unwrap(), size);
        }
    }

    #[test]
    fn sizes_deserialize_from_integers_and_strings() {
        #[derive(Deserialize)]
        struct Doc {
            a: Size,
            b: Size,
        }
        let doc: Doc = toml::from_str("a = 1024\nb = \"2 KiB\"\n").unwrap();
        assert_eq!((doc.a, doc.b), (Size(1024), Size(2048)));
        assert!(toml::from_str::<Doc>("a = 1\nb = \"2 furlongs\"\n").is_err());
    }
}
