//! How a golden case feeds a graph: each graph input from the case input of the same name, and
//! for the `decoder` head (one step on top of a key/value cache, as `fixtures/generate.py` makes
//! the kv-cache case) the step's ids and mask, the reference's past key/values, and the
//! position ids HF ImageGPT derives.

use ndarray::{ArrayD, IxDyn};

use super::fixture::{Case, FeedMiss, FixtureError, DECODER_PREFIX};
use crate::base::{DataType, IoSpec, Tensor};
use crate::graph::io::{is_past, ATTENTION_MASK, INPUT_IDS, POSITION_IDS};
use crate::graph::Head;

impl Case {
    /// The feed for `head`'s graph, whose inputs are `graph_inputs`, in the graph's order.
    /// For `decoder`: `input_ids` / `attention_mask` are the case's `decoder.*` step,
    /// `past_key_values.*` the past goldens, and `position_ids` continue after the past, as HF
    /// ImageGPT derives them when none are given (`arange(past, past + seq)` for every row).
    /// Otherwise a graph input is fed from the input of the same name. A float input declared
    /// float16 is narrowed from the case's float32.
    pub fn feed(
        &self,
        head: Head,
        graph_inputs: &[IoSpec],
    ) -> Result<Vec<(String, Tensor)>, FixtureError> {
        graph_inputs
            .iter()
            .map(|spec| {
                let t = self
                    .feed_one(head, spec)
                    .map_err(|reason| FixtureError::CannotFeed {
                        case: self.manifest.name.clone(),
                        head: head.name(),
                        input: spec.name.clone(),
                        reason,
                    })?;
                Ok((spec.name.clone(), narrow(t, spec.dtype)))
            })
            .collect()
    }

    fn feed_one(&self, head: Head, spec: &IoSpec) -> Result<Tensor, FeedMiss> {
        let name = spec.name.as_str();
        if head == Head::Decoder {
            if let Some(t) = self.inputs.get(&format!("{DECODER_PREFIX}{name}")) {
                return Ok(t.clone());
            }
            if let Some(t) = self.expected(Head::Decoder, name) {
                return Ok(Tensor::F32(t.clone()));
            }
            if name == POSITION_IDS {
                return self.decoder_positions();
            }
        }
        if let Some(t) = self.inputs.get(name) {
            return Ok(t.clone());
        }
        let mut have: Vec<String> = self.inputs.keys().cloned().collect();
        if head == Head::Decoder {
            have.push(format!("{POSITION_IDS} (derived)"));
            have.extend(self.expected_names(Head::Decoder).filter(|n| is_past(n)));
        }
        Err(FeedMiss::NotInCase(have))
    }

    fn expected_names(&self, head: Head) -> impl Iterator<Item = String> + '_ {
        let prefix = format!("{}/", head.name());
        self.expected
            .keys()
            .filter_map(move |k| k.strip_prefix(&prefix).map(str::to_string))
    }

    /// `past .. past + seq` for every row, past being the mask's length less the step's.
    fn decoder_positions(&self) -> Result<Tensor, FeedMiss> {
        let get = |n: &str| {
            let name = format!("{DECODER_PREFIX}{n}");
            self.inputs
                .get(&name)
                .and_then(Tensor::as_i64)
                .ok_or(FeedMiss::NoStep(name))
        };
        let (ids, mask) = (get(INPUT_IDS)?, get(ATTENTION_MASK)?);
        let (&[b, seq], &[_, total]) = (ids.shape(), mask.shape()) else {
            return Err(FeedMiss::StepRank);
        };
        let past = total.checked_sub(seq).ok_or(FeedMiss::StepMask)?;
        let pos = ArrayD::from_shape_fn(IxDyn(&[b, seq]), |ix| (past + ix[1]) as i64);
        Ok(Tensor::I64(pos))
    }
}

/// `t` in the float type a graph declares (the case's float tensors are float32).
fn narrow(t: Tensor, want: DataType) -> Tensor {
    match (t, want) {
        (Tensor::F32(a), DataType::Float16) => Tensor::F16(a.mapv(half::f16::from_f32)),
        (t, _) => t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn spec(name: &str, dtype: DataType, dims: &[&str]) -> IoSpec {
        use crate::base::DimSpec;
        let dims = dims
            .iter()
            .map(|d| {
                d.parse()
                    .map_or_else(|_| DimSpec::Symbol(d.to_string()), DimSpec::Fixed)
            })
            .collect();
        IoSpec {
            name: name.into(),
            dtype,
            dims,
        }
    }

    /// The decoder feed from the kv-cache case: the step's ids and mask, the reference's past
    /// key/values (a 9-token prefix: [2, 4, 9, 8]), positions 9 for the one new token (HF
    /// ImageGPT's `arange(past, past + seq)`, as `generate.py` passed no position_ids), and
    /// only logits and presents expected.
    #[test]
    fn decoder_feed_from_the_kv_cache_case() {
        let case = Case::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/kv-cache"))
            .expect("load");
        let bs = ["batch", "sequence"];
        let kv = ["batch", "4", "past_sequence", "8"];
        let mut graph = vec![
            spec("input_ids", DataType::Int64, &bs),
            spec(
                "attention_mask",
                DataType::Int64,
                &["batch", "past_sequence + sequence"],
            ),
            spec("position_ids", DataType::Int64, &bs),
        ];
        for i in 0..2 {
            graph.push(spec(
                &format!("past_key_values.{i}.key"),
                DataType::Float32,
                &kv,
            ));
            graph.push(spec(
                &format!("past_key_values.{i}.value"),
                DataType::Float16,
                &kv,
            ));
        }
        let feed = case.feed(Head::Decoder, &graph).expect("feeds");
        let names: Vec<&str> = feed.iter().map(|(n, _)| n.as_str()).collect();
        let want: Vec<&str> = graph.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, want);
        assert_eq!(&feed[0].1, &case.inputs["decoder.input_ids"]);
        assert_eq!(&feed[1].1, &case.inputs["decoder.attention_mask"]);
        assert_eq!(feed[1].1.shape(), &[2, 10]);
        let pos = feed[2].1.as_i64().expect("int64");
        assert_eq!(pos.shape(), &[2, 1]);
        assert!(pos.iter().all(|&p| p == 9), "{pos}");
        let key = feed[3].1.as_f32().expect("float32");
        assert_eq!(
            Some(key),
            case.expected(Head::Decoder, "past_key_values.0.key")
        );
        assert_eq!(key.shape(), &[2, 4, 9, 8]);
        // Declared float16: narrowed from the float32 golden.
        assert_eq!(feed[4].1.dtype(), DataType::Float16);
        let expected: Vec<String> = case.expected_outputs(Head::Decoder).into_keys().collect();
        assert_eq!(
            expected,
            [
                "logits",
                "present.0.key",
                "present.0.value",
                "present.1.key",
                "present.1.value"
            ]
        );
        assert!(case.position_mask(Head::Decoder).is_none());

        let err = case
            .feed(
                Head::CausalLm,
                &[spec("pixel_values", DataType::Float32, &["batch"])],
            )
            .expect_err("no such input")
            .to_string();
        assert_eq!(
            err,
            "case kv-cache cannot feed graph input `pixel_values` for the causal-lm head \
             (it has attention_mask, decoder.attention_mask, decoder.input_ids, input_ids)"
        );
    }
}
