//! GetRandomPassword: a password from the operating system's random source, with AWS's
//! rules: 32 characters by default (1 to 4,096), from letters, digits and AWS's
//! punctuation unless excluded, a space only when asked for, and by default at least
//! one character of each type included.

use axum::response::Response;

use super::error::AwsError;
use super::shapes::{GetRandomPasswordInput, GetRandomPasswordOutput};
use super::{AwsCaller, output};

/// AWS's punctuation set.
const PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";
const LOWERCASE: &str = "abcdefghijklmnopqrstuvwxyz";
const UPPERCASE: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const DIGITS: &str = "0123456789";

/// Random numbers from the operating system's source, drawn 256 bytes at a time (a
/// 4,096-character password would otherwise cost thousands of system calls).
struct Random {
    buf: [u8; 256],
    at: usize,
}

impl Random {
    fn new() -> Self {
        Self {
            buf: [0; 256],
            at: 256,
        }
    }

    fn next_u32(&mut self) -> u32 {
        if self.at + 4 > self.buf.len() {
            infra::keyfile::random_bytes(&mut self.buf);
            self.at = 0;
        }
        let mut word = [0u8; 4];
        word.copy_from_slice(&self.buf[self.at..self.at + 4]);
        self.at += 4;
        u32::from_le_bytes(word)
    }

    /// A uniformly random index below `n` (rejection sampling: no modulo bias).
    fn below(&mut self, n: usize) -> usize {
        let n = u32::try_from(n).unwrap_or(u32::MAX).max(1);
        let zone = u32::MAX - (u32::MAX % n);
        loop {
            let x = self.next_u32();
            if x < zone {
                return (x % n) as usize;
            }
        }
    }
}

/// A password following `input`'s rules.
pub fn password(input: &GetRandomPasswordInput) -> Result<String, AwsError> {
    let length = input.password_length.unwrap_or(32);
    if !(1..=4096).contains(&length) {
        return Err(AwsError::invalid(format!(
            "PasswordLength must be between 1 and 4096 (it is {length})"
        )));
    }
    let length = usize::try_from(length).unwrap_or(32);
    let excluded = input.exclude_characters.as_deref().unwrap_or_default();
    let flag = |f: Option<bool>| f.unwrap_or(false);
    let mut types: Vec<Vec<char>> = Vec::new();
    for (set, exclude) in [
        (LOWERCASE, flag(input.exclude_lowercase)),
        (UPPERCASE, flag(input.exclude_uppercase)),
        (DIGITS, flag(input.exclude_numbers)),
        (PUNCTUATION, flag(input.exclude_punctuation)),
        (" ", !flag(input.include_space)),
    ] {
        if exclude {
            continue;
        }
        let chars: Vec<char> = set.chars().filter(|c| !excluded.contains(*c)).collect();
        if !chars.is_empty() {
            types.push(chars);
        }
    }
    if types.is_empty() {
        return Err(AwsError::invalid(
            "every character is excluded: include at least one type of character",
        ));
    }
    let each = input.require_each_included_type.unwrap_or(true);
    if each && types.len() > length {
        return Err(AwsError::invalid(format!(
            "PasswordLength {length} is too short to hold one character of each of the {} \
             types included; make it longer or set RequireEachIncludedType to false",
            types.len()
        )));
    }
    let all: Vec<char> = types.iter().flatten().copied().collect();
    let mut random = Random::new();
    let mut chars: Vec<char> = Vec::with_capacity(length);
    if each {
        chars.extend(types.iter().map(|t| t[random.below(t.len())]));
    }
    while chars.len() < length {
        chars.push(all[random.below(all.len())]);
    }
    // Shuffle (Fisher–Yates), so the required characters are anywhere.
    for i in (1..chars.len()).rev() {
        chars.swap(i, random.below(i + 1));
    }
    Ok(chars.into_iter().collect())
}

/// `GetRandomPassword`. Needs a signed request, like every operation, but reads and
/// writes nothing.
pub async fn get(_caller: &AwsCaller, input: GetRandomPasswordInput) -> Result<Response, AwsError> {
    output(&GetRandomPasswordOutput {
        random_password: password(&input)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> GetRandomPasswordInput {
        GetRandomPasswordInput {
            password_length: None,
            exclude_characters: None,
            exclude_numbers: None,
            exclude_punctuation: None,
            exclude_uppercase: None,
            exclude_lowercase: None,
            include_space: None,
            require_each_included_type: None,
        }
    }

    #[test]
    fn by_default_32_characters_of_every_type_but_space() {
        for _ in 0..200 {
            let p = password(&input()).unwrap();
            assert_eq!(p.chars().count(), 32);
            assert!(p.chars().any(|c| c.is_ascii_lowercase()), "{p}");
            assert!(p.chars().any(|c| c.is_ascii_uppercase()), "{p}");
            assert!(p.chars().any(|c| c.is_ascii_digit()), "{p}");
            assert!(p.chars().any(|c| PUNCTUATION.contains(c)), "{p}");
            assert!(!p.contains(' '), "{p}");
        }
    }

    #[test]
    fn exclusions_hold() {
        let rules = GetRandomPasswordInput {
            password_length: Some(64),
            exclude_characters: Some("abcXYZ019".into()),
            exclude_punctuation: Some(true),
            include_space: Some(true),
            ..input()
        };
        for _ in 0..100 {
            let p = password(&rules).unwrap();
            assert_eq!(p.len(), 64);
            assert!(!p.chars().any(|c| "abcXYZ019".contains(c)), "{p}");
            assert!(!p.chars().any(|c| PUNCTUATION.contains(c)), "{p}");
            assert!(p.contains(' '), "{p}");
        }
    }

    #[test]
    fn impossible_rules_say_why() {
        for rules in [
            GetRandomPasswordInput {
                password_length: Some(0),
                ..input()
            },
            GetRandomPasswordInput {
                password_length: Some(4097),
                ..input()
            },
            GetRandomPasswordInput {
                password_length: Some(3),
                ..input()
            },
            GetRandomPasswordInput {
                exclude_lowercase: Some(true),
                exclude_uppercase: Some(true),
                exclude_numbers: Some(true),
                exclude_punctuation: Some(true),
                ..input()
            },
        ] {
            assert!(password(&rules).is_err());
        }
        let short = GetRandomPasswordInput {
            password_length: Some(3),
            require_each_included_type: Some(false),
            ..input()
        };
        assert_eq!(password(&short).unwrap().len(), 3);
    }
}
