//! The simulated prompt cache (`support/prompt_cache.rs`) behaves as the
//! providers document theirs: the engine's caching tests are only as good
//! as this fake.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::prompt_cache::{Billed, CacheRules, PromptCache};

/// A Messages request: a system prompt of about 1 500 tokens, then the
/// conversation `texts` (alternating user/assistant), with breakpoints on
/// the system block and on the blocks named by `marks` (message index).
fn anthropic(texts: &[&str], marks: &[usize]) -> Value {
    let messages: Vec<Value> = texts
        .iter()
        .enumerate()
        .map(|(at, text)| {
            let mut block = json!({"type": "text", "text": text});
            if marks.contains(&at) {
                block["cache_control"] = json!({"type": "ephemeral"});
            }
            json!({"role": if at % 2 == 0 { "user" } else { "assistant" }, "content": [block]})
        })
        .collect();
    json!({
        "model": "claude-sonnet-4-5",
        "system": [{"type": "text", "text": "s".repeat(6_000), "cache_control": {"type": "ephemeral"}}],
        "messages": messages,
    })
}

fn fresh() -> PromptCache {
    PromptCache::new(CacheRules::default())
}

#[test]
fn a_prefix_is_written_at_a_breakpoint_and_read_by_the_next_request() {
    let cache = fresh();
    let first = cache.anthropic(&anthropic(&["task"], &[0])).unwrap();
    assert_eq!(first.cache_read, 0);
    assert_eq!(
        first.cache_write, first.input,
        "everything up to the last breakpoint"
    );
    let second = cache
        .anthropic(&anthropic(&["task", "answer", "more"], &[0, 2]))
        .unwrap();
    assert_eq!(second.cache_read, first.input);
    assert_eq!(second.cache_write, second.input - first.input);
    // The same request again reads all of it and writes nothing.
    let again = cache
        .anthropic(&anthropic(&["task", "answer", "more"], &[0, 2]))
        .unwrap();
    assert_eq!(
        again,
        Billed {
            input: second.input,
            cache_read: second.input,
            cache_write: 0
        }
    );
    assert!(cache.stats().rewrites.is_empty());
}

#[test]
fn a_cached_prefix_is_found_only_within_twenty_blocks_before_a_breakpoint() {
    let turns: Vec<String> = (0..60).map(|k| format!("turn {k}")).collect();
    let texts: Vec<&str> = turns.iter().map(String::as_str).collect();
    let cache = fresh();
    // Cached up to message 9.
    cache.anthropic(&anthropic(&texts[..10], &[9])).unwrap();
    // A breakpoint 20 blocks later still finds it (system is block 0, so
    // message k is block k + 1).
    let near = cache.anthropic(&anthropic(&texts[..30], &[29])).unwrap();
    let cached_to_9 = cache
        .anthropic(&anthropic(&texts[..10], &[9]))
        .unwrap()
        .input;
    assert_eq!(near.cache_read, cached_to_9);
    // 21 blocks later it is not found: only the system prefix is read.
    let other = fresh();
    other.anthropic(&anthropic(&texts[..10], &[9])).unwrap();
    let far = other.anthropic(&anthropic(&texts[..31], &[30])).unwrap();
    let system_only = fresh().anthropic(&anthropic(&[], &[])).unwrap().input;
    assert_eq!(far.cache_read, system_only);
    // An intermediate breakpoint at the old end finds it however far the
    // request grew.
    let marked = other.anthropic(&anthropic(&texts[..60], &[9, 59])).unwrap();
    assert_eq!(marked.cache_read, cached_to_9);
}

#[test]
fn short_prefixes_are_not_cached_and_haiku_needs_more() {
    let cache = fresh();
    let mut small = json!({
        "model": "claude-sonnet-4-5",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "x".repeat(3_000), "cache_control": {"type": "ephemeral"}}]}],
    });
    // About 750 tokens: under the 1 024 minimum, nothing is written.
    assert_eq!(cache.anthropic(&small).unwrap().cache_write, 0);
    assert_eq!(cache.anthropic(&small).unwrap().cache_read, 0);
    small["messages"][0]["content"][0]["text"] = "x".repeat(6_000).into();
    assert!(cache.anthropic(&small).unwrap().cache_write > 0);
    assert!(cache.anthropic(&small).unwrap().cache_read > 0);
    small["model"] = "claude-3-5-haiku".into();
    let haiku = cache.anthropic(&small).unwrap();
    assert_eq!((haiku.cache_read, haiku.cache_write), (0, 0), "{haiku:?}");
}

#[test]
fn entries_expire_after_their_ttl_and_hits_refresh_them() {
    let cache = fresh();
    let request = anthropic(&["task"], &[0]);
    cache.anthropic(&request).unwrap();
    cache.advance(Duration::from_secs(240));
    assert!(
        cache.anthropic(&request).unwrap().cache_read > 0,
        "4 minutes: still there"
    );
    cache.advance(Duration::from_secs(240));
    assert!(
        cache.anthropic(&request).unwrap().cache_read > 0,
        "the hit 4 minutes ago refreshed it"
    );
    cache.advance(Duration::from_secs(301));
    let expired = cache.anthropic(&request).unwrap();
    assert_eq!(expired.cache_read, 0, "5 minutes unused: gone");
    assert_eq!(expired.cache_write, expired.input);
    // An hour-long breakpoint outlives five minutes.
    let mut long = anthropic(&["long task"], &[]);
    long["messages"][0]["content"][0]["cache_control"] = json!({"type": "ephemeral", "ttl": "1h"});
    cache.anthropic(&long).unwrap();
    cache.advance(Duration::from_secs(1_800));
    assert!(cache.anthropic(&long).unwrap().cache_read > 0);
}

#[test]
fn more_than_four_breakpoints_are_refused_as_the_api_does() {
    let err = fresh()
        .anthropic(&anthropic(&["a", "b", "c", "d"], &[0, 1, 2, 3]))
        .unwrap_err();
    assert_eq!(
        err,
        "A maximum of 4 blocks with cache_control may be provided. Found 5."
    );
}

#[test]
fn openai_reads_the_longest_earlier_prefix_in_steps_of_128_tokens() {
    let cache = fresh();
    let request = |texts: &[&str]| {
        let mut messages = vec![json!({"role": "system", "content": "s".repeat(6_000)})];
        messages.extend(
            texts
                .iter()
                .map(|text| json!({"role": "user", "content": text})),
        );
        json!({"model": "gpt-4o", "messages": messages})
    };
    let first = cache.openai(&request(&["task"]));
    assert_eq!(first.cache_read, 0);
    let second = cache.openai(&request(&["task", "more"]));
    assert!(second.cache_read > 0 && second.cache_read <= first.input);
    assert_eq!(second.cache_read % 128, 0);
    assert!(first.input - second.cache_read < 128);
    // Under 1 024 tokens nothing is cached.
    let small = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    cache.openai(&small);
    assert_eq!(cache.openai(&small).cache_read, 0);
}

#[test]
fn a_request_that_rewrites_its_session_is_recorded() {
    let cache = fresh();
    cache
        .anthropic(&anthropic(&["task", "a", "b"], &[2]))
        .unwrap();
    cache
        .anthropic(&anthropic(&["task", "a", "b", "c", "d"], &[4]))
        .unwrap();
    assert!(cache.stats().rewrites.is_empty());
    // The same session (same system and task) with an earlier message changed.
    cache
        .anthropic(&anthropic(&["task", "A", "b", "c", "d", "e"], &[5]))
        .unwrap();
    let stats = cache.stats();
    assert_eq!(stats.rewrites, ["task (block 2 of 6)"]);
    assert_eq!(stats.requests, 3);
    assert!(stats.hit_ratio() > 0.0 && stats.hit_ratio() < 1.0);
}
