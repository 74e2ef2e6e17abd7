//! `#[derive(DomainEvent)]`: a serde type becomes a typed domain event.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use tidings::DomainEvent;
//!
//! #[derive(Serialize, Deserialize, DomainEvent)]
//! #[event(name = "order.created", version = 2, category = "domain")]
//! struct OrderCreated {
//!     #[event(subject)]
//!     order_id: String,
//!     total: f64,
//! }
//!
//! assert_eq!(OrderCreated::NAME, "order.created");
//! assert_eq!(OrderCreated::VERSION, 2);
//! ```
//!
//! Container attributes, inside `#[event(...)]`:
//!
//! | key | meaning |
//! |---|---|
//! | `name = "..."` | required: the event type and topic; checked for empty words and wildcards |
//! | `version = N` | schema version, from 1 (default 1) |
//! | `category = "..."` | `domain`, `integration`, `system`, `user` or `notification` |
//! | `upcasters(f1, f2, ...)` | one function per earlier version, oldest first, each turning a version's JSON data into the next's (`fn(serde_json::Value) -> Result<serde_json::Value, UpcastError>`): a consumer reads events of every version |
//! | `crate = "path"` | where the tidings items live, if not `::tidings` or `::tidings_core` |
//!
//! A field marked `#[event(subject)]` becomes the envelope's `subject` (its `Display` text).
//!
//! The derive also describes the type's JSON Schema (`DomainEvent::data_schema`) with
//! [schemars](https://docs.rs/schemars), reading the same `serde` attributes and doc comments,
//! so the types of its fields implement `schemars::JsonSchema` (derive it on your own
//! nested types; std, `chrono` and `uuid` types have it). Generic events describe none.
//!
//! The generated code only names items of `tidings-core` (through the facade when the user
//! depends on `tidings`), so the derive stays thin.

use proc_macro::TokenStream;
use proc_macro_crate::{FoundCrate, crate_name};
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote};
use syn::spanned::Spanned;
use syn::{
    Data, DeriveInput, Error, Expr, ExprLit, Fields, Lit, LitStr, Member, parse_macro_input,
};

const CATEGORIES: [(&str, &str); 5] = [
    ("domain", "Domain"),
    ("integration", "Integration"),
    ("system", "System"),
    ("user", "User"),
    ("notification", "Notification"),
];

/// Implements `DomainEvent` for a serde struct or enum. See the crate docs for the attributes.
#[proc_macro_derive(DomainEvent, attributes(event))]
pub fn derive_domain_event(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand(&input)
        .unwrap_or_else(Error::into_compile_error)
        .into()
}

#[derive(Default)]
struct Container {
    name: Option<LitStr>,
    version: Option<(u32, Span)>,
    category: Option<LitStr>,
    krate: Option<syn::Path>,
    /// `upcasters(v1_to_v2, ...)`, and where the key was written.
    upcasters: Option<(Vec<syn::Path>, Span)>,
}

fn expand(input: &DeriveInput) -> syn::Result<TokenStream2> {
    let container = container_attrs(input)?;
    let Some(name) = container.name else {
        return Err(Error::new(
            Span::call_site(),
            "missing event name: add #[event(name = \"resource.action\", version = 1)]",
        ));
    };
    check_name(&name)?;
    let version = container.version.map_or(1, |(v, _)| v);
    let krate = match container.krate {
        Some(path) => quote!(#path),
        None => default_crate_path(),
    };
    let category = match &container.category {
        None => quote!(::core::option::Option::None),
        Some(lit) => {
            let value = lit.value();
            let Some((_, variant)) = CATEGORIES.iter().find(|(n, _)| *n == value) else {
                return Err(Error::new(
                    lit.span(),
                    format!(
                        "unknown category `{value}`: expected one of domain, integration, system, user, notification"
                    ),
                ));
            };
            let variant = format_ident!("{}", variant);
            quote!(::core::option::Option::Some(#krate::envelope::Category::#variant))
        }
    };
    let subject = subject_fn(input)?;
    let schema = schema_fn(input, &krate);
    let upcasters = match &container.upcasters {
        None => TokenStream2::new(),
        Some((paths, span)) => {
            let needed = version as usize - 1;
            if paths.len() != needed {
                return Err(Error::new(
                    *span,
                    format!(
                        "version {version} needs {needed} upcaster(s), one from each earlier \
                         version in order (1 to 2, 2 to 3, ...); {} given",
                        paths.len()
                    ),
                ));
            }
            quote! {
                const UPCASTERS: &'static [#krate::Upcaster] = &[#(#paths),*];
            }
        }
    };

    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    Ok(quote! {
        impl #impl_generics #krate::DomainEvent for #ident #ty_generics #where_clause {
            const NAME: &'static str = #name;
            const VERSION: u32 = #version;
            const CATEGORY: ::core::option::Option<#krate::envelope::Category> = #category;
            #subject
            #schema
            #upcasters
        }
    })
}

/// `data_schema()`: the type's JSON Schema, from schemars.
///
/// A derive cannot add derives to the type it is given, so this one describes a copy: the
/// same fields with the same `serde`, `schemars` and doc attributes, declared inside the
/// function (where it sees the same module), deriving `JsonSchema` under the type's name.
/// Generic types keep the default (`None`): their parameters carry no `JsonSchema` bound.
fn schema_fn(input: &DeriveInput, krate: &TokenStream2) -> TokenStream2 {
    if input.generics.params.iter().next().is_some() {
        return TokenStream2::new();
    }
    let described = |attr: &syn::Attribute| {
        ["serde", "schemars", "doc"]
            .iter()
            .any(|name| attr.path().is_ident(name))
    };
    let mut copy = input.clone();
    copy.attrs.retain(described);
    // Private, as nothing outside the function sees it (`unreachable_pub` otherwise).
    copy.vis = syn::Visibility::Inherited;
    let keep_field_attrs = |fields: &mut Fields| {
        for field in fields.iter_mut() {
            field.attrs.retain(described);
            field.vis = syn::Visibility::Inherited;
        }
    };
    match &mut copy.data {
        Data::Struct(data) => keep_field_attrs(&mut data.fields),
        Data::Enum(data) => {
            for variant in &mut data.variants {
                variant.attrs.retain(described);
                keep_field_attrs(&mut variant.fields);
            }
        }
        Data::Union(_) => return TokenStream2::new(),
    }
    let schemars_path = format!("{krate}::schemars").replace(' ', "");
    let name = input.ident.to_string();
    let copy_ident = &copy.ident;
    quote! {
        fn data_schema() -> ::core::option::Option<#krate::schemars::Schema> {
            #[derive(#krate::schemars::JsonSchema)]
            #[schemars(crate = #schemars_path, rename = #name)]
            #[allow(dead_code, unused_qualifications, clippy::all, clippy::pedantic)]
            #copy
            ::core::option::Option::Some(#krate::schemars::schema_for!(#copy_ident))
        }
    }
}

fn default_crate_path() -> TokenStream2 {
    let found = crate_name("tidings")
        .map(|found| (found, "tidings"))
        .or_else(|_| crate_name("tidings-core").map(|found| (found, "tidings_core")));
    match found {
        Ok((FoundCrate::Name(name), _)) => {
            let ident = format_ident!("{}", name);
            quote!(::#ident)
        }
        Ok((FoundCrate::Itself, own)) => {
            let ident = format_ident!("{}", own);
            quote!(::#ident)
        }
        Err(_) => quote!(::tidings),
    }
}

fn container_attrs(input: &DeriveInput) -> syn::Result<Container> {
    if let Data::Union(u) = &input.data {
        return Err(Error::new(
            u.union_token.span(),
            "DomainEvent cannot be derived for unions: use a struct or an enum",
        ));
    }
    let mut container = Container::default();
    let mut seen_attr = false;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("event")) {
        seen_attr = true;
        attr.parse_nested_meta(|meta| {
            let key = meta
                .path
                .get_ident()
                .map(ToString::to_string)
                .unwrap_or_default();
            let duplicate = || meta.error(format!("duplicate `{key}` in #[event(...)]"));
            match key.as_str() {
                "name" => {
                    let lit: LitStr = meta.value()?.parse()?;
                    if container.name.replace(lit).is_some() {
                        return Err(duplicate());
                    }
                }
                "version" => {
                    let expr: Expr = meta.value()?.parse()?;
                    let Expr::Lit(ExprLit {
                        lit: Lit::Int(int), ..
                    }) = &expr
                    else {
                        return Err(Error::new(
                            expr.span(),
                            "version must be an integer literal, e.g. version = 1",
                        ));
                    };
                    let version: u32 = int.base10_parse()?;
                    if version == 0 {
                        return Err(Error::new(int.span(), "versions start at 1"));
                    }
                    if container.version.replace((version, int.span())).is_some() {
                        return Err(duplicate());
                    }
                }
                "category" => {
                    let lit: LitStr = meta.value()?.parse()?;
                    if container.category.replace(lit).is_some() {
                        return Err(duplicate());
                    }
                }
                "crate" => {
                    let lit: LitStr = meta.value()?.parse()?;
                    if container.krate.replace(lit.parse()?).is_some() {
                        return Err(duplicate());
                    }
                }
                "upcasters" => {
                    let span = meta.path.span();
                    let mut paths = Vec::new();
                    meta.parse_nested_meta(|inner| {
                        paths.push(inner.path.clone());
                        Ok(())
                    })?;
                    if container.upcasters.replace((paths, span)).is_some() {
                        return Err(duplicate());
                    }
                }
                "subject" => {
                    return Err(meta.error(
                        "`subject` goes on a field: #[event(subject)] order_id: String",
                    ));
                }
                _ => {
                    return Err(meta.error(format!(
                        "unknown key `{key}` in #[event(...)]: expected name, version, category, upcasters or crate"
                    )));
                }
            }
            Ok(())
        })?;
    }
    if !seen_attr {
        return Err(Error::new(
            Span::call_site(),
            "missing #[event(name = \"resource.action\", version = 1)] on the type",
        ));
    }
    Ok(container)
}

/// Names are topics: no empty words, no wildcard words, no whitespace, at most 255 bytes.
fn check_name(lit: &LitStr) -> syn::Result<()> {
    let name = lit.value();
    let problem = if name.is_empty() {
        Some("must not be empty".to_owned())
    } else if name.len() > 255 {
        Some("is longer than 255 bytes".to_owned())
    } else if name.chars().any(char::is_whitespace) {
        Some("must not contain whitespace".to_owned())
    } else if name.split('.').any(str::is_empty) {
        Some("has an empty word (`..`, or a leading or trailing `.`)".to_owned())
    } else if name.split('.').any(|w| w == "*" || w == "#") {
        Some("contains a `*` or `#` word; event names are topics, not patterns".to_owned())
    } else {
        None
    };
    match problem {
        Some(p) => Err(Error::new(lit.span(), format!("event name `{name}` {p}"))),
        None => Ok(()),
    }
}

fn subject_fn(input: &DeriveInput) -> syn::Result<TokenStream2> {
    let mut subject: Option<Member> = None;
    let check_fields = |fields: &Fields, subject: &mut Option<Member>, in_enum: bool| {
        for (index, field) in fields.iter().enumerate() {
            for attr in field.attrs.iter().filter(|a| a.path().is_ident("event")) {
                attr.parse_nested_meta(|meta| {
                    if !meta.path.is_ident("subject") {
                        return Err(meta.error("the only field attribute is #[event(subject)]"));
                    }
                    if in_enum {
                        return Err(meta.error(
                            "#[event(subject)] is for struct fields; implement DomainEvent by hand for enums with subjects",
                        ));
                    }
                    let member = match &field.ident {
                        Some(ident) => Member::Named(ident.clone()),
                        None => Member::Unnamed(index.into()),
                    };
                    if subject.replace(member).is_some() {
                        return Err(meta.error("only one field can be #[event(subject)]"));
                    }
                    Ok(())
                })?;
            }
        }
        Ok::<_, Error>(())
    };
    match &input.data {
        Data::Struct(s) => check_fields(&s.fields, &mut subject, false)?,
        Data::Enum(e) => {
            for variant in &e.variants {
                check_fields(&variant.fields, &mut subject, true)?;
            }
        }
        Data::Union(_) => {}
    }
    Ok(match subject {
        None => quote!(),
        Some(member) => quote! {
            fn subject(&self) -> ::core::option::Option<::std::string::String> {
                ::core::option::Option::Some(::std::string::ToString::to_string(&self.#member))
            }
        },
    })
}
