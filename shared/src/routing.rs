//! Routing states and the one pure function that derives an agent's effective config from them.
//!
//! An agent's `llm_config` depends on two things that change independently:
//! - the agent's own **route** ([`AgentRoute`]): its config source and the version of its last own
//!   change (register, set, clear, join/leave of the realm it is routed through);
//! - for realm and registry routing, the **dependency**: the realm's [`RealmRouting`] (sealed key,
//!   active models in order, public LiteLLM URL) or the model's [`ModelRouting`] (its upstream
//!   config).
//!
//! Every change of either takes a fresh version from the one global counter (`{vc}:version-seq`), so
//! the effective version `max(route.version, dependency.version)` strictly increases for every agent
//! whenever its config may have changed, and a realm-level change is one write and one push whatever the
//! number of agents routed through it ([decision 0004](../../docs/decisions/0004-push-delivery.md)).
//! The worker writes the states, edges derive each held agent's frame with [`effective`], and the API
//! derives the views with the same function.

use serde::{Deserialize, Serialize};

use crate::domain::{ConfigSource, Mode};
use crate::wire::{ConfigState, SealedLlmConfig};

/// The provider name of every realm-routed config (LiteLLM speaks the OpenAI API).
pub const REALM_PROVIDER: &str = "openai-compatible";

/// A model a realm's key reaches, as its agents see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoutedModel {
    /// Registry id.
    pub id: String,
    /// LiteLLM model name (what the agent asks for).
    pub litellm_model_name: String,
}

/// What agents routed through a realm derive their config from (`{vc}:routing:realm:<id>`, and the
/// payload of `vc.push.realm.<id>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RealmRouting {
    /// The realm.
    pub realm_id: String,
    /// Version from the global counter, taken at the change.
    pub version: u64,
    /// The realm was deleted (a tombstone: its id is never used again).
    #[serde(default)]
    pub deleted: bool,
    /// `LITELLM_PUBLIC_URL` as the worker had it at the change (`None`: LiteLLM not configured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// The realm's virtual key, sealed for [`crate::crypto::Purpose::AgentConfigKey`] and bound to the
    /// realm id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_sealed: Option<String>,
    /// Active granted models, sorted by name (then id): the key's list, in order.
    #[serde(default)]
    pub models: Vec<RoutedModel>,
}

/// What agents in registry mode on a model derive their config from (`{vc}:routing:model:<id>`, and
/// the payload of `vc.push.model.<id>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelRouting {
    /// The model.
    pub model_id: String,
    /// Version from the global counter, taken at the change.
    pub version: u64,
    /// The model was deleted (a tombstone: its id is never used again).
    #[serde(default)]
    pub deleted: bool,
    /// The upstream config (key sealed for [`crate::crypto::Purpose::AgentConfigKey`], bound to the
    /// model id); `None` while the model is inactive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<SealedLlmConfig>,
}

/// An agent's own part of its config: its source and the version of its last own change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentRoute {
    /// Version from the global counter, taken at the agent's last own change.
    pub version: u64,
    /// How its config is chosen; `None` = fall back to the agent's local environment.
    pub source: Option<ConfigSource>,
}

/// What an agent's config depends on besides its own route.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dependency {
    /// A realm's routing.
    Realm(String),
    /// A registry model's routing.
    Model(String),
}

impl Dependency {
    /// The dependency of a source (manual configs and `None` have none).
    pub fn of(source: Option<&ConfigSource>) -> Option<Dependency> {
        match source? {
            ConfigSource::Realm { realm_id, .. } => Some(Dependency::Realm(realm_id.clone())),
            ConfigSource::Registry { model_id } => Some(Dependency::Model(model_id.clone())),
            ConfigSource::Manual { .. } => None,
        }
    }
}

/// A dependency's routing state.
#[derive(Debug, Clone, PartialEq)]
pub enum Routing {
    /// A realm's.
    Realm(RealmRouting),
    /// A model's.
    Model(ModelRouting),
}

impl Routing {
    /// Which dependency it is the state of.
    pub fn dependency(&self) -> Dependency {
        match self {
            Routing::Realm(r) => Dependency::Realm(r.realm_id.clone()),
            Routing::Model(m) => Dependency::Model(m.model_id.clone()),
        }
    }

    /// Its version.
    pub fn version(&self) -> u64 {
        match self {
            Routing::Realm(r) => r.version,
            Routing::Model(m) => m.version,
        }
    }
}

impl RealmRouting {
    /// The model an agent routed through this realm uses: its chosen one while it is an active grant,
    /// else the first active model by name.
    pub fn chosen(&self, model_id: &str) -> Option<&RoutedModel> {
        self.models
            .iter()
            .find(|m| m.id == model_id)
            .or(self.models.first())
    }

    /// Whether agents routed through the realm have a config (a key, a LiteLLM URL, an active model).
    pub fn usable(&self) -> bool {
        !self.deleted && self.key_sealed.is_some() && self.base_url.is_some()
    }

    /// The config of an agent that chose `model_id` (sealed key).
    pub fn config_for(&self, model_id: &str) -> Option<SealedLlmConfig> {
        if !self.usable() {
            return None;
        }
        let chosen = self.chosen(model_id)?;
        Some(SealedLlmConfig {
            provider: REALM_PROVIDER.into(),
            model: chosen.litellm_model_name.clone(),
            base_url: self.base_url.clone(),
            api_key_sealed: self.key_sealed.clone(),
            allowed_models: Some(
                self.models
                    .iter()
                    .map(|m| m.litellm_model_name.clone())
                    .collect(),
            ),
            system_prompt: None,
            max_tokens: None,
        })
    }
}

/// The agent's effective config state: what an edge sends as `llm_config` and what the API shows.
///
/// `dependency` is the routing of [`Dependency::of`] the route's source (`None` when it is not stored:
/// the realm never had a key, or the model predates routing states; the config is then `null`). A
/// dependency of another entity is ignored.
pub fn effective(route: &AgentRoute, dependency: Option<&Routing>) -> ConfigState {
    let none = |version: u64, mode: Option<Mode>, realm_id: Option<String>| ConfigState {
        config: None,
        version,
        mode,
        realm_id,
        key_owner: None,
    };
    match &route.source {
        None => none(route.version, None, None),
        Some(ConfigSource::Manual {
            provider,
            model,
            api_key_sealed,
            base_url,
            system_prompt,
            max_tokens,
        }) => ConfigState {
            config: Some(SealedLlmConfig {
                provider: provider.as_str().into(),
                model: model.clone(),
                base_url: base_url.clone(),
                api_key_sealed: api_key_sealed.clone(),
                allowed_models: None,
                system_prompt: system_prompt.clone(),
                max_tokens: *max_tokens,
            }),
            version: route.version,
            mode: Some(Mode::Manual),
            realm_id: None,
            key_owner: None,
        },
        Some(ConfigSource::Realm { realm_id, model_id }) => {
            let realm = match dependency {
                Some(Routing::Realm(r)) if &r.realm_id == realm_id => Some(r),
                _ => None,
            };
            match realm {
                None => none(route.version, Some(Mode::Realm), Some(realm_id.clone())),
                // A deleted realm: its agents fall back to their local environment.
                Some(r) if r.deleted => none(route.version.max(r.version), None, None),
                Some(r) => ConfigState {
                    config: r.config_for(model_id),
                    version: route.version.max(r.version),
                    mode: Some(Mode::Realm),
                    realm_id: Some(realm_id.clone()),
                    key_owner: Some(realm_id.clone()),
                },
            }
        }
        Some(ConfigSource::Registry { model_id }) => {
            let model = match dependency {
                Some(Routing::Model(m)) if &m.model_id == model_id => Some(m),
                _ => None,
            };
            match model {
                None => none(route.version, Some(Mode::Registry), None),
                Some(m) => ConfigState {
                    config: if m.deleted { None } else { m.config.clone() },
                    version: route.version.max(m.version),
                    mode: Some(Mode::Registry),
                    realm_id: None,
                    key_owner: Some(model_id.clone()),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Provider;

    fn realm(version: u64, models: &[(&str, &str)]) -> RealmRouting {
        RealmRouting {
            realm_id: "r1".into(),
            version,
            deleted: false,
            base_url: Some("http://litellm:4000".into()),
            key_sealed: Some("v1.sealed".into()),
            models: models
                .iter()
                .map(|(id, n)| RoutedModel {
                    id: (*id).into(),
                    litellm_model_name: (*n).into(),
                })
                .collect(),
        }
    }

    fn routed(version: u64, model: &str) -> AgentRoute {
        AgentRoute {
            version,
            source: Some(ConfigSource::Realm {
                realm_id: "r1".into(),
                model_id: model.into(),
            }),
        }
    }

    #[test]
    fn realm_routing_uses_the_chosen_model_while_it_is_active() {
        let r = Routing::Realm(realm(9, &[("a", "openai/a"), ("b", "openai/b")]));
        let s = effective(&routed(4, "b"), Some(&r));
        let c = s.config.expect("config");
        assert_eq!(c.model, "openai/b");
        assert_eq!(c.provider, REALM_PROVIDER);
        assert_eq!(
            c.allowed_models,
            Some(vec!["openai/a".into(), "openai/b".into()])
        );
        assert_eq!(s.version, 9, "the realm's newer version");
        assert_eq!(s.mode, Some(Mode::Realm));
        assert_eq!(s.realm_id.as_deref(), Some("r1"));
        assert_eq!(
            s.key_owner.as_deref(),
            Some("r1"),
            "the realm's key, bound to it"
        );
    }

    #[test]
    fn a_revoked_choice_falls_back_to_the_first_active_model() {
        let r = Routing::Realm(realm(12, &[("a", "openai/a")]));
        let s = effective(&routed(4, "b"), Some(&r));
        assert_eq!(s.config.expect("config").model, "openai/a");
        let empty = Routing::Realm(realm(13, &[]));
        let s = effective(&routed(4, "b"), Some(&empty));
        assert!(s.config.is_none());
        assert_eq!((s.version, s.mode), (13, Some(Mode::Realm)));
    }

    #[test]
    fn versions_take_the_newer_of_route_and_dependency() {
        let r = Routing::Realm(realm(5, &[("a", "openai/a")]));
        assert_eq!(effective(&routed(8, "a"), Some(&r)).version, 8);
        assert_eq!(effective(&routed(3, "a"), Some(&r)).version, 5);
    }

    #[test]
    fn a_deleted_realm_gives_null_at_its_tombstone_version() {
        let mut t = realm(20, &[("a", "openai/a")]);
        t.deleted = true;
        let s = effective(&routed(4, "a"), Some(&Routing::Realm(t)));
        assert_eq!(s.config, None);
        assert_eq!((s.version, s.mode, s.realm_id), (20, None, None));
    }

    #[test]
    fn a_dependency_of_another_entity_is_ignored() {
        let mut other = realm(50, &[("a", "openai/a")]);
        other.realm_id = "r2".into();
        let s = effective(&routed(4, "a"), Some(&Routing::Realm(other)));
        assert_eq!((s.config, s.version), (None, 4));
    }

    #[test]
    fn registry_follows_the_model_and_manual_needs_nothing() {
        let m = ModelRouting {
            model_id: "m".into(),
            version: 30,
            deleted: false,
            config: Some(SealedLlmConfig {
                provider: "openai".into(),
                model: "gpt".into(),
                base_url: None,
                api_key_sealed: Some("v1.k".into()),
                allowed_models: None,
                system_prompt: None,
                max_tokens: None,
            }),
        };
        let route = AgentRoute {
            version: 7,
            source: Some(ConfigSource::Registry {
                model_id: "m".into(),
            }),
        };
        let s = effective(&route, Some(&Routing::Model(m.clone())));
        assert_eq!(
            s.key_owner.as_deref(),
            Some("m"),
            "the model's key, bound to it"
        );
        assert_eq!(
            (s.version, s.mode, s.config.map(|c| c.model)),
            (30, Some(Mode::Registry), Some("gpt".into()))
        );
        let inactive = ModelRouting { config: None, ..m };
        assert!(effective(&route, Some(&Routing::Model(inactive)))
            .config
            .is_none());
        let manual = AgentRoute {
            version: 3,
            source: Some(ConfigSource::Manual {
                provider: Provider::Anthropic,
                model: "claude".into(),
                api_key_sealed: None,
                base_url: None,
                system_prompt: Some("be brief".into()),
                max_tokens: Some(10),
            }),
        };
        let s = effective(&manual, None);
        assert_eq!(s.key_owner, None, "the agent's own key, bound to its DID");
        let c = s.config.expect("manual config");
        assert_eq!((c.provider.as_str(), s.version), ("anthropic", 3));
        assert_eq!(c.max_tokens, Some(10));
    }
}
