//! [`Command::parse`]: a kind and a body to a validated [`Command`] or a [`ParseError`].

use serde::de::DeserializeOwned;

use super::validate::{
    color, non_empty_if_given, optional, provider, realm_slug, required, usd_per_token,
    validate_did, validate_id, validate_url,
};
use super::{
    AgentRegisterBody, BudgetBody, BudgetReport, Command, CommandKind, GrantBody, IdBody,
    KeyRotateBody, KeyStepBody, LlmConfigForm, LlmConfigSetBody, MembershipBody, ModelRegister,
    ModelRegisterBody, ModelUpdate, ModelUpdateBody, ParseError, RealmCreate, RealmCreateBody,
    RealmUpdate, RealmUpdateBody, SecretInput, MAX_DESCRIPTION_LEN, MAX_NAME_LEN, MAX_PROMPT_LEN,
    MAX_URL_LEN,
};
use crate::budget::{LimitsUpdate, MAX_LIMIT};
use crate::domain::{slug, ModelStatus};
use crate::error::{DomainError, DomainResult};
use crate::rotation::MAX_GRACE_SECS;

fn undecodable(msg: impl Into<String>) -> ParseError {
    ParseError::Undecodable(DomainError::bad_request(msg))
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, ParseError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(undecodable("body is required (a JSON object)"));
    }
    // First, one JSON value as any JSON reader (and the REST API) takes it: syntax, trailing bytes,
    // numbers out of range (`1e400`) and nesting deeper than 128 are "not valid JSON" wherever they
    // are, even after a field of the wrong type (`{"id":[1}`) or in a field the kind does not use.
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| undecodable(format!("body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(undecodable("body must be a JSON object"));
    }
    // Then the kind's fields, from the bytes (so a duplicate field is seen), with the field's path.
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = strip_position(&inner.to_string());
        if inner.is_syntax() || inner.is_eof() {
            undecodable(format!("body is not valid JSON: {inner}"))
        } else if msg.starts_with("duplicate field") || path == "." {
            ParseError::Invalid(DomainError::bad_request(msg))
        } else {
            ParseError::Invalid(DomainError::bad_request(format!("{path}: {msg}")))
        }
    })
}

/// A limit change: absent keeps, `null` removes, a whole number from 1 to [`MAX_LIMIT`] sets.
fn limit(
    field: &str,
    v: Option<Option<serde_json::Value>>,
) -> Result<Option<Option<u64>>, ParseError> {
    match v {
        None => Ok(None),
        Some(None) | Some(Some(serde_json::Value::Null)) => Ok(Some(None)),
        Some(Some(v)) => match v.as_u64() {
            Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(Some(Some(n))),
            _ => Err(DomainError::bad_request(format!(
                "{field} must be a whole number from 1 to {MAX_LIMIT}, or null to remove the limit"
            ))
            .into()),
        },
    }
}

fn strip_position(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

impl Command {
    /// Validates a command body of the given kind.
    pub fn parse(kind: CommandKind, body: &[u8]) -> DomainResult<Command> {
        Self::parse_checked(kind, body).map_err(ParseError::into_error)
    }

    /// [`Command::parse`], telling a body that cannot be read at all from an invalid one.
    pub fn parse_checked(kind: CommandKind, body: &[u8]) -> Result<Command, ParseError> {
        Ok(match kind {
            CommandKind::ModelRegister => {
                let b: ModelRegisterBody = decode(body)?;
                let id = b.id.map(|id| validate_id("id", Some(id))).transpose()?;
                let name = required("name", b.name, MAX_NAME_LEN)?;
                let provider = provider("provider", b.provider)?;
                let model_id = required("modelId", b.model_id, MAX_NAME_LEN)?;
                let base_url = match optional("baseUrl", b.base_url, MAX_URL_LEN)? {
                    Some(u) => Some(validate_url("baseUrl", &u)?),
                    None if provider.requires_base_url() => {
                        return Err(DomainError::bad_request(format!(
                            "baseUrl is required for provider {}",
                            provider.as_str()
                        ))
                        .into())
                    }
                    None => None,
                };
                if crate::domain::slug(&name).is_empty() {
                    return Err(DomainError::bad_request(
                        "name must contain at least one ASCII letter or digit (a-z, 0-9)",
                    )
                    .into());
                }
                let api_key = SecretInput::from_pair("apiKey", b.api_key, b.api_key_sealed)?;
                let description = optional("description", b.description, MAX_DESCRIPTION_LEN)?;
                let input_cost_per_token = b
                    .input_cost_per_token
                    .map(|p| usd_per_token("inputCostPerToken", p))
                    .transpose()?;
                let output_cost_per_token = b
                    .output_cost_per_token
                    .map(|p| usd_per_token("outputCostPerToken", p))
                    .transpose()?;
                Command::ModelRegister(ModelRegister {
                    id,
                    name,
                    provider,
                    model_id,
                    base_url,
                    api_key,
                    description,
                    input_cost_per_token,
                    output_cost_per_token,
                })
            }
            CommandKind::ModelUpdate => {
                let b: ModelUpdateBody = decode(body)?;
                let id = validate_id("id", b.id)?;
                let name = non_empty_if_given("name", b.name, MAX_NAME_LEN)?;
                if let Some(n) = &name {
                    if slug(n).is_empty() {
                        return Err(DomainError::bad_request(
                            "name must contain at least one ASCII letter or digit (a-z, 0-9)",
                        )
                        .into());
                    }
                }
                let description = match b.description {
                    None => None,
                    Some(d) => Some(optional("description", d, MAX_DESCRIPTION_LEN)?),
                };
                let status = match b.status {
                    None => None,
                    Some(s) => Some(match s.as_str() {
                        "active" => ModelStatus::Active,
                        "inactive" => ModelStatus::Inactive,
                        _ => {
                            return Err(DomainError::bad_request(
                                "status must be \"active\" or \"inactive\"",
                            )
                            .into())
                        }
                    }),
                };
                let provider = b
                    .provider
                    .map(|p| provider("provider", Some(p)))
                    .transpose()?;
                let model_id = non_empty_if_given("modelId", b.model_id, MAX_NAME_LEN)?;
                let base_url = match b.base_url {
                    None => None,
                    Some(None) => Some(None),
                    Some(Some(u)) if u.trim().is_empty() => Some(None),
                    Some(Some(u)) => Some(Some(validate_url("baseUrl", &u)?)),
                };
                let api_key = match (b.api_key, b.api_key_sealed) {
                    (None, None) => None,
                    (Some(None), None) => Some(None),
                    (Some(Some(c)), s) => Some(SecretInput::from_pair("apiKey", Some(c), s)?),
                    (Some(None), Some(_)) => {
                        return Err(DomainError::bad_request(
                            "give either apiKey or apiKeySealed, not both",
                        )
                        .into())
                    }
                    (None, Some(s)) => Some(Some(SecretInput::Sealed(s))),
                };
                let price = |field: &str, p: Option<Option<f64>>| match p {
                    Some(Some(p)) => usd_per_token(field, p).map(|p| Some(Some(p))),
                    other => Ok(other),
                };
                let input_cost_per_token = price("inputCostPerToken", b.input_cost_per_token)?;
                let output_cost_per_token = price("outputCostPerToken", b.output_cost_per_token)?;
                Command::ModelUpdate(ModelUpdate {
                    id,
                    name,
                    description,
                    status,
                    provider,
                    model_id,
                    base_url,
                    api_key,
                    input_cost_per_token,
                    output_cost_per_token,
                })
            }
            CommandKind::ModelDelete => {
                let b: IdBody = decode(body)?;
                Command::ModelDelete {
                    id: validate_id("id", b.id)?,
                }
            }
            CommandKind::RealmCreate => {
                let b: RealmCreateBody = decode(body)?;
                let id = b.id.map(|id| validate_id("id", Some(id))).transpose()?;
                let name = required("name", b.name, MAX_NAME_LEN)?;
                let slug = match optional("slug", b.slug, 200)? {
                    Some(s) => realm_slug("slug", &s)?,
                    None => realm_slug("name", &name)?,
                };
                let description = optional("description", b.description, MAX_DESCRIPTION_LEN)?;
                Command::RealmCreate(RealmCreate {
                    id,
                    name,
                    slug,
                    description,
                    color: color(b.color)?,
                })
            }
            CommandKind::RealmUpdate => {
                let b: RealmUpdateBody = decode(body)?;
                let realm_id = validate_id("realmId", b.realm_id)?;
                let name = non_empty_if_given("name", b.name, MAX_NAME_LEN)?;
                let slug = match b.slug {
                    None => None,
                    Some(s) => Some(realm_slug("slug", &s)?),
                };
                let description = match b.description {
                    None => None,
                    Some(d) => Some(optional("description", d, MAX_DESCRIPTION_LEN)?),
                };
                Command::RealmUpdate(RealmUpdate {
                    realm_id,
                    name,
                    slug,
                    description,
                    color: color(b.color)?,
                    limits: LimitsUpdate {
                        rpm_limit: limit("rpmLimit", b.rpm_limit)?,
                        tpm_limit: limit("tpmLimit", b.tpm_limit)?,
                        max_parallel_requests: limit(
                            "maxParallelRequests",
                            b.max_parallel_requests,
                        )?,
                    },
                })
            }
            CommandKind::RealmDelete => {
                let b: IdBody = decode(body)?;
                Command::RealmDelete {
                    realm_id: validate_id("realmId", b.realm_id)?,
                }
            }
            CommandKind::RealmGrant | CommandKind::RealmRevoke => {
                let b: GrantBody = decode(body)?;
                let model_id = validate_id("modelId", b.model_id)?;
                let realm_id = validate_id("realmId", b.realm_id)?;
                if kind == CommandKind::RealmRevoke {
                    Command::RealmRevoke { model_id, realm_id }
                } else {
                    if let Some(Some(budget)) = b.monthly_budget_usd {
                        if !budget.is_finite() || budget < 0.0 {
                            return Err(DomainError::bad_request(
                                "monthlyBudgetUsd must be a number >= 0",
                            )
                            .into());
                        }
                        if budget > 1e9 {
                            return Err(DomainError::bad_request(
                                "monthlyBudgetUsd is too large (at most 1e9)",
                            )
                            .into());
                        }
                    }
                    Command::RealmGrant {
                        model_id,
                        realm_id,
                        monthly_budget_usd: b.monthly_budget_usd,
                    }
                }
            }
            CommandKind::RealmAgentAdd | CommandKind::RealmAgentRemove => {
                let b: MembershipBody = decode(body)?;
                let realm_id = validate_id("realmId", b.realm_id)?;
                let agent_did = validate_did("agentDid", b.agent_did)?;
                if kind == CommandKind::RealmAgentAdd {
                    Command::RealmAgentAdd {
                        realm_id,
                        agent_did,
                        is_primary: b.is_primary.unwrap_or(false),
                    }
                } else {
                    Command::RealmAgentRemove {
                        realm_id,
                        agent_did,
                    }
                }
            }
            CommandKind::AgentRegister => {
                let b: AgentRegisterBody = decode(body)?;
                let did = validate_did("did", b.did)?;
                let name = required("name", b.name, MAX_NAME_LEN)?;
                Command::AgentRegister { did, name }
            }
            CommandKind::AgentDelete => {
                let b: IdBody = decode(body)?;
                Command::AgentDelete {
                    did: validate_did("did", b.did)?,
                }
            }
            CommandKind::AgentLlmConfigClear => {
                let b: IdBody = decode(body)?;
                Command::AgentLlmConfigClear {
                    did: validate_did("did", b.did)?,
                }
            }
            CommandKind::AgentLlmConfigSet => {
                let b: LlmConfigSetBody = decode(body)?;
                let did = validate_did("did", b.did)?;
                let form = if b.realm_id.is_some() || b.realm_model_id.is_some() {
                    LlmConfigForm::Realm {
                        realm_id: validate_id("realmId", b.realm_id)?,
                        model_id: validate_id("realmModelId", b.realm_model_id)?,
                    }
                } else if b.registry_model_id.is_some() {
                    LlmConfigForm::Registry {
                        model_id: validate_id("registryModelId", b.registry_model_id)?,
                    }
                } else {
                    let provider = provider("provider", b.provider)?;
                    let model = required("model", b.model, MAX_NAME_LEN)?;
                    let api_key = SecretInput::from_pair("apiKey", b.api_key, b.api_key_sealed)?;
                    let base_url = optional("baseUrl", b.base_url, MAX_URL_LEN)?
                        .map(|u| validate_url("baseUrl", &u))
                        .transpose()?;
                    let system_prompt = optional("systemPrompt", b.system_prompt, MAX_PROMPT_LEN)?;
                    let max_tokens = match b.max_tokens {
                        None => None,
                        Some(n) if (1..=10_000_000).contains(&n) => Some(n as u32),
                        Some(_) => {
                            return Err(DomainError::bad_request(
                                "maxTokens must be an integer from 1 to 10000000",
                            )
                            .into())
                        }
                    };
                    LlmConfigForm::Manual {
                        provider,
                        model,
                        api_key,
                        base_url,
                        system_prompt,
                        max_tokens,
                    }
                };
                Command::AgentLlmConfigSet { did, form }
            }
            CommandKind::LitellmReconcile => Command::LitellmReconcile,
            CommandKind::RealmKeyRotate => {
                let b: KeyRotateBody = decode(body)?;
                let realm_id = validate_id("realmId", b.realm_id)?;
                let grace_secs = match b.grace_seconds {
                    None | Some(serde_json::Value::Null) => None,
                    Some(v) => match v.as_u64() {
                        Some(n) if n <= MAX_GRACE_SECS => Some(n),
                        _ => {
                            return Err(DomainError::bad_request(format!(
                                "graceSeconds must be a whole number of seconds from 0 to {MAX_GRACE_SECS}"
                            ))
                            .into())
                        }
                    },
                };
                Command::RealmKeyRotate {
                    realm_id,
                    grace_secs,
                }
            }
            CommandKind::RealmSpendRefresh => {
                let b: IdBody = decode(body)?;
                Command::RealmSpendRefresh {
                    realm_id: validate_id("realmId", b.realm_id)?,
                }
            }
            CommandKind::RealmBudgetAlert | CommandKind::RealmBudgetGuard => {
                let b: BudgetBody = decode(body)?;
                let usd = |field: &str, v: Option<f64>| match v {
                    Some(x) if x.is_finite() && x >= 0.0 => Ok(x),
                    _ => Err(DomainError::bad_request(format!(
                        "{field} must be a number >= 0"
                    ))),
                };
                let report = BudgetReport {
                    realm_id: validate_id("realmId", b.realm_id)?,
                    period: optional("period", b.period, 64)?,
                    spend_usd: usd("spendUsd", b.spend_usd)?,
                    budget_usd: usd("budgetUsd", b.budget_usd)?,
                    fractions: b.fractions,
                };
                if report
                    .fractions
                    .iter()
                    .any(|f| !f.is_finite() || *f <= 0.0 || *f > 10.0)
                {
                    return Err(DomainError::bad_request(
                        "fractions must be numbers from 0 (excluded) to 10",
                    )
                    .into());
                }
                if kind == CommandKind::RealmBudgetAlert {
                    if report.fractions.is_empty() {
                        return Err(DomainError::bad_request("fractions is required").into());
                    }
                    Command::RealmBudgetAlert(report)
                } else {
                    let Some(block) = b.block else {
                        return Err(DomainError::bad_request("block is required").into());
                    };
                    Command::RealmBudgetGuard { report, block }
                }
            }
            CommandKind::RealmKeyActivate | CommandKind::RealmKeyRetire => {
                let b: KeyStepBody = decode(body)?;
                let realm_id = validate_id("realmId", b.realm_id)?;
                let key_id = b.key_id.unwrap_or_default();
                if key_id.len() != 16 || !key_id.bytes().all(|c| c.is_ascii_hexdigit()) {
                    return Err(DomainError::bad_request("keyId must be 16 hex digits").into());
                }
                if kind == CommandKind::RealmKeyActivate {
                    Command::RealmKeyActivate { realm_id, key_id }
                } else {
                    Command::RealmKeyRetire { realm_id, key_id }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(kind: CommandKind, body: &str) -> String {
        Command::parse(kind, body.as_bytes()).unwrap_err().message
    }

    #[test]
    fn model_register_validation_names_fields() {
        let k = CommandKind::ModelRegister;
        assert_eq!(err(k, "{}"), "name is required");
        assert_eq!(err(k, r#"{"name":"x"}"#), "provider is required");
        assert!(err(k, r#"{"name":"x","provider":"nope","modelId":"m"}"#)
            .starts_with("provider must be one of"));
        assert_eq!(
            err(k, r#"{"name":"x","provider":"openai"}"#),
            "modelId is required"
        );
        assert_eq!(
            err(k, r#"{"name":"x","provider":"ollama","modelId":"m"}"#),
            "baseUrl is required for provider ollama"
        );
        assert!(err(
            k,
            r#"{"name":"x","provider":"ollama","modelId":"m","baseUrl":"ftp://a"}"#
        )
        .starts_with("baseUrl must be"));
        assert!(err(k, r#"{"name":5}"#).starts_with("name: invalid type"));
        let e = err(k, "[1]");
        assert!(e.starts_with("body must be a JSON object"), "{e}");
        assert!(err(k, "{").starts_with("body is not valid JSON"));
        let ok = Command::parse(
            k,
            br#"{"name":" GPT 4o ","provider":"openai","modelId":"gpt-4o","apiKey":"sk-1"}"#,
        )
        .unwrap();
        match ok {
            Command::ModelRegister(m) => {
                assert_eq!(m.name, "GPT 4o");
                assert_eq!(m.api_key, Some(SecretInput::Clear("sk-1".into())));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tri_state_fields() {
        let c = Command::parse(
            CommandKind::ModelUpdate,
            br#"{"id":"m1","apiKey":null,"description":null}"#,
        )
        .unwrap();
        match c {
            Command::ModelUpdate(u) => {
                assert_eq!(u.api_key, Some(None));
                assert_eq!(u.description, Some(None));
                assert_eq!(u.base_url, None);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            err(CommandKind::ModelUpdate, r#"{"id":"m1","status":"gone"}"#),
            "status must be \"active\" or \"inactive\""
        );
    }

    /// Prices are numbers from 0 to 1000, each refusal naming its field; on update `null` clears.
    #[test]
    fn model_prices_are_numbers_from_0_to_1000() {
        let reg = |extra: &str| {
            format!(r#"{{"name":"Llama","provider":"openai","modelId":"llama3"{extra}}}"#)
        };
        let k = CommandKind::ModelRegister;
        for (field, value, message) in [
            ("inputCostPerToken", "-0.000001", "must be a number >= 0"),
            ("outputCostPerToken", "-1", "must be a number >= 0"),
            ("inputCostPerToken", "1000.5", "is too large (at most 1000)"),
            ("outputCostPerToken", "1e300", "is too large (at most 1000)"),
        ] {
            for kind in [k, CommandKind::ModelUpdate] {
                let body = if kind == k {
                    reg(&format!(r#","{field}":{value}"#))
                } else {
                    format!(r#"{{"id":"m1","{field}":{value}}}"#)
                };
                assert_eq!(err(kind, &body), format!("{field} {message}"), "{body}");
            }
        }
        // Not a number: serde's words, after the field's name.
        let e = err(k, &reg(r#","inputCostPerToken":"0.001""#));
        assert!(
            e.starts_with("inputCostPerToken: invalid type: string"),
            "{e}"
        );
        let e = err(k, &reg(r#","outputCostPerToken":true"#));
        assert!(
            e.starts_with("outputCostPerToken: invalid type: boolean"),
            "{e}"
        );
        // The bounds are accepted; `null` on register is "not given"; `-0` is 0.
        let body = reg(r#","inputCostPerToken":0,"outputCostPerToken":1000"#);
        match Command::parse(k, body.as_bytes()).unwrap() {
            Command::ModelRegister(m) => {
                assert_eq!(m.input_cost_per_token, Some(0.0));
                assert_eq!(m.output_cost_per_token, Some(1000.0));
            }
            other => panic!("{other:?}"),
        }
        let body = reg(r#","inputCostPerToken":-0.0,"outputCostPerToken":null"#);
        match Command::parse(k, body.as_bytes()).unwrap() {
            Command::ModelRegister(m) => {
                let p = m.input_cost_per_token.unwrap();
                assert!(p == 0.0 && p.is_sign_positive(), "{p}");
                assert_eq!(m.output_cost_per_token, None);
            }
            other => panic!("{other:?}"),
        }
        let body = reg(r#","inputCostPerToken":2e-7,"outputCostPerToken":6e-7"#);
        match Command::parse(k, body.as_bytes()).unwrap() {
            Command::ModelRegister(m) => {
                assert_eq!(m.input_cost_per_token, Some(2e-7));
                assert_eq!(m.output_cost_per_token, Some(6e-7));
            }
            other => panic!("{other:?}"),
        }
        // On update: a number sets, `null` clears, absent keeps.
        let c = Command::parse(
            CommandKind::ModelUpdate,
            br#"{"id":"m1","inputCostPerToken":0.000001,"outputCostPerToken":null}"#,
        )
        .unwrap();
        match c {
            Command::ModelUpdate(u) => {
                assert_eq!(u.input_cost_per_token, Some(Some(0.000001)));
                assert_eq!(u.output_cost_per_token, Some(None));
            }
            other => panic!("{other:?}"),
        }
        match Command::parse(CommandKind::ModelUpdate, br#"{"id":"m1"}"#).unwrap() {
            Command::ModelUpdate(u) => {
                assert_eq!(u.input_cost_per_token, None);
                assert_eq!(u.output_cost_per_token, None);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn llm_config_forms_first_match_wins() {
        let did = crate::did::did_from_key(&crate::did::generate_key().verifying_key());
        let body = format!(r#"{{"did":"{did}","realmId":"r1","registryModelId":"m2"}}"#);
        assert_eq!(
            err(CommandKind::AgentLlmConfigSet, &body),
            "realmModelId is required"
        );
        let body = format!(r#"{{"did":"{did}","registryModelId":"m2","provider":"openai"}}"#);
        assert!(matches!(
            Command::parse(CommandKind::AgentLlmConfigSet, body.as_bytes()).unwrap(),
            Command::AgentLlmConfigSet {
                form: LlmConfigForm::Registry { .. },
                ..
            }
        ));
        let body = format!(r#"{{"did":"{did}","provider":"openai"}}"#);
        assert_eq!(
            err(CommandKind::AgentLlmConfigSet, &body),
            "model is required"
        );
        let body = format!(r#"{{"did":"{did}","provider":"openai","model":"m","maxTokens":0}}"#);
        assert!(err(CommandKind::AgentLlmConfigSet, &body).starts_with("maxTokens"));
        assert!(err(
            CommandKind::AgentRegister,
            r#"{"did":"did:web:x","name":"a"}"#
        )
        .starts_with("did is not a valid did:key"));
    }

    #[test]
    fn grant_budget_rules() {
        assert_eq!(
            err(
                CommandKind::RealmGrant,
                r#"{"modelId":"m","realmId":"r","monthlyBudgetUsd":-1}"#
            ),
            "monthlyBudgetUsd must be a number >= 0"
        );
        let c = Command::parse(
            CommandKind::RealmGrant,
            br#"{"modelId":"m","realmId":"r","monthlyBudgetUsd":null}"#,
        )
        .unwrap();
        assert!(matches!(
            c,
            Command::RealmGrant {
                monthly_budget_usd: Some(None),
                ..
            }
        ));
    }
}
