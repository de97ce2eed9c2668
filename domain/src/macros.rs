//! Shared implementations of parsed string newtypes.

/// Implements `as_str`, `Display`, and a `Deserialize` that goes through `parse`, for
/// a `struct Name(String)` with `fn parse(&str) -> Result<Self, Rejection>`: a value
/// read from the wire is exactly as valid as one built in code. With `stored = f`,
/// `Deserialize` goes through `f` instead: the rules a value was written under, for a
/// type whose rules for new values have since grown stricter (the log is never
/// rewritten, so what it holds must keep reading).
macro_rules! parsed_string {
    ($name:ident, stored = $stored:path) => {
        impl $name {
            /// The value as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl ::std::convert::From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as ::serde::Deserialize>::deserialize(d)?;
                $stored(&s).map_err(|r| ::serde::de::Error::custom(r.message))
            }
        }
    };
    ($name:ident) => {
        impl $name {
            /// The value as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl ::std::convert::From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as ::serde::Deserialize>::deserialize(d)?;
                Self::parse(&s).map_err(|r| ::serde::de::Error::custom(r.message))
            }
        }
    };
}
