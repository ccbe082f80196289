//! The `settings!` declaration: one entry per setting gives the `Config` field, its type,
//! default, doc, key (and so its environment variable), kind (how it is read) and check. From
//! it come the structs and their `Default` and `Debug`, reading the file and the environment,
//! validation, `align config print`, the unknown-variable warning and the settings table of
//! `docs/operations.md`.

use crate::error::Error;

/// One setting as declared: its key, doc, documented default and flag.
#[derive(Debug, PartialEq, Eq)]
pub struct Setting {
    pub(crate) key: &'static str,
    pub(crate) doc: &'static str,
    pub(crate) default: Option<&'static str>,
    pub(crate) flag: Option<&'static str>,
}

impl Setting {
    /// The key path in the TOML file, e.g. `ratelimit.per_minute`.
    pub fn key(&self) -> &'static str {
        self.key
    }

    /// The environment variable: `ALIGN_` + the key upper-cased, dots as underscores
    /// (`ratelimit.per_minute` → `ALIGN_RATELIMIT_PER_MINUTE`).
    pub fn env(&self) -> String {
        env_name(self.key)
    }

    /// What the setting does, on one line (markdown).
    pub fn doc(&self) -> String {
        self.doc
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The default as documented when it is not simply the default value (e.g. `off`).
    pub fn documented_default(&self) -> Option<&'static str> {
        self.default
    }

    /// The command-line flag that sets it too, as documented (e.g. `` `--listen` ``).
    pub fn flag(&self) -> Option<&'static str> {
        self.flag
    }
}

/// The environment variable of `key`.
pub(crate) fn env_name(key: &str) -> String {
    format!("ALIGN_{}", key.to_ascii_uppercase().replace('.', "_"))
}

/// Why a check refused a value: the reason, and the key to name when one rule covers several
/// settings (else the setting's own key).
#[derive(Debug)]
pub(crate) struct Refusal {
    key: Option<&'static str>,
    reason: &'static str,
}

impl Refusal {
    pub(crate) fn error(self, key: &'static str) -> Error {
        Error::Setting {
            key: self.key.unwrap_or(key).to_owned(),
            reason: self.reason.to_owned(),
        }
    }
}

/// A value that can be zero (or an empty duration).
pub(crate) trait Zero {
    fn is_zero(&self) -> bool;
}

macro_rules! zero_is {
    ($($t:ty),*) => {$(
        impl Zero for $t {
            fn is_zero(&self) -> bool {
                *self == 0
            }
        }
    )*};
}
zero_is!(u32, u64, usize);

impl Zero for std::time::Duration {
    fn is_zero(&self) -> bool {
        Self::is_zero(self)
    }
}

impl<T: Zero> Zero for Option<T> {
    fn is_zero(&self) -> bool {
        self.as_ref().is_some_and(Zero::is_zero)
    }
}

/// Refuses zero with `reason`, naming the setting.
pub(crate) fn not_zero<T: Zero>(reason: &'static str) -> impl Fn(&T) -> Result<(), Refusal> {
    move |v| {
        if v.is_zero() {
            Err(Refusal { key: None, reason })
        } else {
            Ok(())
        }
    }
}

/// Refuses zero with `reason`, naming `key` (a rule that covers several settings).
pub(crate) fn not_zero_in<T: Zero>(
    key: &'static str,
    reason: &'static str,
) -> impl Fn(&T) -> Result<(), Refusal> {
    move |v| {
        if v.is_zero() {
            Err(Refusal {
                key: Some(key),
                reason,
            })
        } else {
            Ok(())
        }
    }
}

/// Refuses a value for which `ok` is false with `reason`, naming the setting.
pub(crate) fn must<T: ?Sized>(
    ok: impl Fn(&T) -> bool,
    reason: &'static str,
) -> impl Fn(&T) -> Result<(), Refusal> {
    move |v| {
        if ok(v) {
            Ok(())
        } else {
            Err(Refusal { key: None, reason })
        }
    }
}

/// Declares a settings struct: each setting is
///
/// ```text
/// /// doc: what it does (markdown; also the `docs/operations.md` table's "meaning")
/// #[setting("key.path", Kind, default = "documented default", flag = "`--flag`", check = …)]
/// pub field: Type = default_value,
/// ```
///
/// (`default`, `flag` and `check` optional, in that order), then `groups { pub field: Type, }`
/// for nested settings structs declared the same way.
macro_rules! settings {
    (@opt) => { None };
    (@opt $v:literal) => { Some($v) };
    (
        $(#[$attr:meta])*
        pub struct $name:ident {
            $(
                $(#[doc = $doc:literal])*
                #[setting($key:literal, $kind:ty
                    $(, default = $shown:literal)?
                    $(, flag = $flag:literal)?
                    $(, check = $check:expr)?
                )]
                pub $field:ident: $ty:ty = $default:expr,
            )*
            $(
                groups {
                    $(
                        $(#[doc = $gdoc:literal])*
                        pub $group:ident: $gty:ty,
                    )*
                }
            )?
        }
    ) => {
        $(#[$attr])*
        pub struct $name {
            $(
                $(#[doc = $doc])*
                #[doc = ""]
                #[doc = concat!("Setting `", $key, "`.")]
                pub $field: $ty,
            )*
            $($(
                $(#[doc = $gdoc])*
                pub $group: $gty,
            )*)?
        }

        impl Default for $name {
            fn default() -> Self {
                Self {
                    $($field: $default,)*
                    $($($group: <$gty>::default(),)*)?
                }
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                /// One field through its kind's `Debug` (secrets masked).
                struct Shown<'a, K: $crate::config::kinds::Kind>(&'a K::Value);
                impl<K: $crate::config::kinds::Kind> std::fmt::Debug for Shown<'_, K> {
                    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        K::debug(self.0, f)
                    }
                }
                f.debug_struct(stringify!($name))
                    $(.field(stringify!($field), &Shown::<$kind>(&self.$field)))*
                    $($(.field(stringify!($group), &self.$group))*)?
                    .finish()
            }
        }

        impl $name {
            /// This struct's settings, then its groups'.
            pub(crate) fn declared(out: &mut Vec<&'static $crate::config::declare::Setting>) {
                const OWN: &[$crate::config::declare::Setting] = &[$(
                    $crate::config::declare::Setting {
                        key: $key,
                        doc: concat!($($doc, "\n",)*),
                        default: settings!(@opt $($shown)?),
                        flag: settings!(@opt $($flag)?),
                    },
                )*];
                out.extend(OWN);
                $($(<$gty>::declared(out);)*)?
            }

            /// Sets `key` from an environment variable's text (errors name `name`); `None`
            /// when `key` is not here.
            pub(crate) fn set_text(
                &mut self,
                key: &str,
                name: &str,
                text: &str,
            ) -> Option<Result<(), $crate::error::Error>> {
                use $crate::config::kinds::Kind as _;
                match key {
                    $($key => {
                        return Some(<$kind>::from_text(name, text).map(|v| self.$field = v));
                    })*
                    _ => {}
                }
                $($(
                    if let Some(done) = self.$group.set_text(key, name, text) {
                        return Some(done);
                    }
                )*)?
                None
            }

            /// Sets `key` from the TOML file `file`'s `value`; `None` when `key` is not here.
            pub(crate) fn set_toml(
                &mut self,
                key: &str,
                value: toml::Value,
                file: &std::path::Path,
            ) -> Option<Result<(), $crate::error::Error>> {
                use $crate::config::kinds::Kind as _;
                match key {
                    $($key => {
                        return Some(<$kind>::from_toml(key, value, file).map(|v| self.$field = v));
                    })*
                    _ => {}
                }
                $($(
                    if let Some(done) = self.$group.set_toml(key, value.clone(), file) {
                        return Some(done);
                    }
                )*)?
                None
            }

            /// The value of `key` as `align config print` shows it (secrets masked):
            /// `Some(None)` when unset, `None` when `key` is not here.
            pub(crate) fn show(&self, key: &str) -> Option<Option<String>> {
                use $crate::config::kinds::Kind as _;
                match key {
                    $($key => return Some(<$kind>::show(&self.$field)),)*
                    _ => {}
                }
                $($(
                    if let Some(shown) = self.$group.show(key) {
                        return Some(shown);
                    }
                )*)?
                None
            }

            /// Every setting's own check, in declaration order.
            pub(crate) fn check(&self) -> Result<(), $crate::error::Error> {
                $($(
                    ($check)(&self.$field).map_err(|r| r.error($key))?;
                )?)*
                $($(self.$group.check()?;)*)?
                Ok(())
            }
        }
    };
}

pub(crate) use settings;
