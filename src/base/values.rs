//! Named choices (heads, profiles, precisions, runtimes): each type lists its values once
//! ([`Choice::all`]) and names each once ([`Choice::name`]); parsing, the command line's
//! possible values and the one-line message for an unknown name are all generated from that.

use std::fmt;
use std::marker::PhantomData;

use clap::builder::{PossibleValue, TypedValueParser};

/// A closed set of named values.
pub trait Choice: Copy + PartialEq + fmt::Debug + Send + Sync + 'static {
    /// What a value is called in messages (`head`, `runtime`).
    const WHAT: &'static str;
    /// Every value, in the order help and messages list them.
    fn all() -> Vec<Self>;
    /// The value's name on the command line, in metadata and in reports.
    fn name(self) -> &'static str;

    /// The value named `name`.
    fn parse(name: &str) -> Option<Self> {
        Self::all().into_iter().find(|v| v.name() == name)
    }

    /// `base, causal-lm, classifier or decoder`.
    fn expected() -> String {
        let names: Vec<&str> = Self::all().into_iter().map(Choice::name).collect();
        match names.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            Some((last, _)) => (*last).to_string(),
            None => String::new(),
        }
    }

    /// The value named `name`, or an error that lists the names.
    fn parse_or_err(name: &str) -> Result<Self, Unknown> {
        Self::parse(name).ok_or_else(|| Unknown {
            what: Self::WHAT,
            name: name.to_string(),
            expected: Self::expected(),
        })
    }
}

/// A name that is none of a choice's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{name}` (expected {expected})")]
pub struct Unknown {
    pub what: &'static str,
    pub name: String,
    pub expected: String,
}

/// One value of `T`, or all of them (`--head all`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OneOrAll<T> {
    One(T),
    All,
}

impl<T: Choice> Choice for OneOrAll<T> {
    const WHAT: &'static str = T::WHAT;

    fn all() -> Vec<Self> {
        let mut v: Vec<Self> = T::all().into_iter().map(OneOrAll::One).collect();
        v.push(OneOrAll::All);
        v
    }

    fn name(self) -> &'static str {
        match self {
            OneOrAll::One(t) => t.name(),
            OneOrAll::All => "all",
        }
    }
}

/// The clap value parser of a [`Choice`]: help lists the names, and an unknown name is one line
/// (clap's own message spans several).
#[derive(Debug, Clone, Copy)]
pub struct ChoiceParser<T>(PhantomData<T>);

impl<T> ChoiceParser<T> {
    pub fn new() -> Self {
        ChoiceParser(PhantomData)
    }
}

impl<T> Default for ChoiceParser<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Choice> TypedValueParser for ChoiceParser<T> {
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<T, clap::Error> {
        let text = value.to_string_lossy();
        T::parse_or_err(&text)
            .map_err(|e| clap::Error::raw(clap::error::ErrorKind::InvalidValue, e).with_cmd(cmd))
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(
            T::all().into_iter().map(|v| PossibleValue::new(v.name())),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Fruit {
        Apple,
        Pear,
        Plum,
    }

    impl Choice for Fruit {
        const WHAT: &'static str = "fruit";
        fn all() -> Vec<Self> {
            vec![Fruit::Apple, Fruit::Pear, Fruit::Plum]
        }
        fn name(self) -> &'static str {
            match self {
                Fruit::Apple => "apple",
                Fruit::Pear => "pear",
                Fruit::Plum => "plum",
            }
        }
    }

    #[test]
    fn names_round_trip_and_unknown_names_list_the_choices() {
        for f in Fruit::all() {
            assert_eq!(Fruit::parse(f.name()), Some(f));
        }
        assert_eq!(
            Fruit::parse_or_err("fig").expect_err("unknown").to_string(),
            "unknown fruit `fig` (expected apple, pear or plum)"
        );
        assert_eq!(
            OneOrAll::<Fruit>::parse_or_err("fig")
                .expect_err("unknown")
                .to_string(),
            "unknown fruit `fig` (expected apple, pear, plum or all)"
        );
        assert_eq!(OneOrAll::<Fruit>::parse("all"), Some(OneOrAll::All));
    }
}
