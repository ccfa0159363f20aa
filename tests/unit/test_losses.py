"""Reference-value tests for distill.losses: tiny hand-made tensors, explicit formulas, CPU."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from pydantic import ValidationError
from transformers import BertConfig, BertForSequenceClassification
from transformers.modeling_outputs import SequenceClassifierOutput

from distill.architectures import student_from_layers
from distill.losses import LOSS_KINDS, DistillLoss, build_loss, parse_loss_config

torch.set_num_threads(1)
TOL = 1e-6  # float32 arithmetic on a handful of numbers

# --- fixed inputs: batch 2, 3 classes, sequence length 3 (last token of row 1 is padding) ---
S_LOGITS = [[1.0, 2.0, 0.5], [0.2, -1.0, 3.0]]
T_LOGITS = [[2.0, 0.0, 1.0], [1.5, 0.5, -0.5]]
LABELS = [2, -100]
MASK = [[1, 1, 1], [1, 1, 0]]
# Hidden states for one encoder layer: [B=2, L=3, H=2]; index 0 of the tuple is the embeddings.
S_HID = [[[1.0, 0.0], [0.5, 0.5], [2.0, -1.0]], [[0.0, 1.0], [1.0, 1.0], [9.0, 9.0]]]
T_HID = [[[1.0, 1.0], [0.0, 0.5], [1.0, -1.0]], [[1.0, 1.0], [-1.0, 2.0], [-5.0, 5.0]]]
# Attention probabilities [B=2, heads, Lq=3, Lk=3]: student 1 head, teacher 2 heads.
S_ATT = [[[[0.5, 0.5, 0.0], [0.2, 0.3, 0.5], [1.0, 0.0, 0.0]]],
         [[[0.6, 0.4, 0.0], [0.1, 0.9, 0.0], [0.3, 0.3, 0.4]]]]
T_ATT = [[[[1.0, 0.0, 0.0], [0.2, 0.2, 0.6], [0.0, 1.0, 0.0]], [[0.0, 1.0, 0.0], [0.4, 0.4, 0.2], [0.0, 0.0, 1.0]]],
         [[[0.5, 0.5, 0.0], [0.3, 0.7, 0.0], [0.9, 0.1, 0.0]], [[0.7, 0.3, 0.0], [0.5, 0.5, 0.0], [0.1, 0.1, 0.8]]]]


def _softmax(xs: list[float], t: float) -> list[float]:
    exps = [math.exp(x / t) for x in xs]
    return [e / sum(exps) for e in exps]


def _ref_kd_kl() -> float:
    t = 2.0
    total = 0.0
    for s_row, t_row in zip(S_LOGITS, T_LOGITS, strict=True):
        p_s, p_t = _softmax(s_row, t), _softmax(t_row, t)
        total += sum(pt * (math.log(pt) - math.log(ps)) for pt, ps in zip(p_t, p_s, strict=True))
    return total / len(S_LOGITS) * t * t  # batchmean, times T^2


def _ref_ce() -> float:
    # Only row 0 is labelled: -log softmax(S_LOGITS[0])[2].
    return -math.log(_softmax(S_LOGITS[0], 1.0)[LABELS[0]])


def _valid_tokens() -> list[tuple[int, int]]:
    return [(b, i) for b in range(2) for i in range(3) if MASK[b][i]]


def _ref_hidden_mse() -> float:
    sq = [(S_HID[b][i][h] - T_HID[b][i][h]) ** 2 for b, i in _valid_tokens() for h in range(2)]
    return sum(sq) / len(sq)


def _ref_hidden_cosine() -> float:
    def cos(u: list[float], v: list[float]) -> float:
        return sum(a * b for a, b in zip(u, v, strict=True)) / (math.hypot(*u) * math.hypot(*v))

    vals = [1.0 - cos(S_HID[b][i], T_HID[b][i]) for b, i in _valid_tokens()]
    return sum(vals) / len(vals)


def _ref_attention() -> float:
    # Head counts differ (1 vs 2): average teacher heads, compare over valid (query, key) pairs.
    sq = []
    for b in range(2):
        for q in range(3):
            for k in range(3):
                if MASK[b][q] and MASK[b][k]:
                    t_mean = (T_ATT[b][0][q][k] + T_ATT[b][1][q][k]) / 2
                    sq.append((S_ATT[b][0][q][k] - t_mean) ** 2)
    return sum(sq) / len(sq)


# A kind without a reference here fails test_reference_value (KeyError), it never skips.
REFERENCES = {
    "kd_kl": ({"kind": "kd_kl", "temperature": 2.0}, _ref_kd_kl),
    "ce": ({"kind": "ce"}, _ref_ce),
    "hidden_mse": ({"kind": "hidden_mse", "layer_map": [[0, 0]]}, _ref_hidden_mse),
    "hidden_cosine": ({"kind": "hidden_cosine", "layer_map": [[-1, 0]]}, _ref_hidden_cosine),
    "attention": ({"kind": "attention", "layer_map": [[0, 0]]}, _ref_attention),
}
SAME_WIDTH = SimpleNamespace(hidden_size=2, num_hidden_layers=1)


def _outputs(logits: list, hidden: list, att: list) -> SequenceClassifierOutput:
    h = torch.tensor(hidden)
    return SequenceClassifierOutput(
        logits=torch.tensor(logits, requires_grad=True),
        hidden_states=(torch.zeros_like(h), h.requires_grad_(True)),
        attentions=(torch.tensor(att),),
    )


def _student_teacher() -> tuple[SequenceClassifierOutput, SequenceClassifierOutput]:
    return _outputs(S_LOGITS, S_HID, S_ATT), _outputs(T_LOGITS, T_HID, T_ATT)


@pytest.mark.parametrize("kind", LOSS_KINDS)
def test_reference_value(kind: str) -> None:
    cfg, reference = REFERENCES[kind]
    loss = build_loss(cfg, SAME_WIDTH, SAME_WIDTH)
    s, t = _student_teacher()
    value = loss(s, t, torch.tensor(LABELS), torch.tensor(MASK))
    assert math.isclose(value.item(), reference(), rel_tol=TOL, abs_tol=TOL), (kind, value.item(), reference())


def test_kd_kl_is_zero_when_logits_match_and_scales_with_t_squared() -> None:
    s, _ = _student_teacher()
    assert build_loss({"kind": "kd_kl"})(s, s, None, None).item() == pytest.approx(0.0, abs=1e-7)
    # Large T: T^2 * KL -> sum over rows of sum_c (d_c - mean d)^2 / (2 C) / B with d = s - t (Hinton).
    big = build_loss({"kind": "kd_kl", "temperature": 100.0})
    s2, t2 = _student_teacher()
    d = [[a - b for a, b in zip(sr, tr, strict=True)] for sr, tr in zip(S_LOGITS, T_LOGITS, strict=True)]
    approx = sum(sum((x - sum(r) / 3) ** 2 for x in r) / 6 for r in d) / 2
    assert big(s2, t2, None, None).item() == pytest.approx(approx, rel=1e-2)


def test_ce_ignores_unlabelled_rows() -> None:
    ce = build_loss({"kind": "ce"})
    s, t = _student_teacher()
    base = ce(s, t, torch.tensor(LABELS), None).item()
    changed = [S_LOGITS[0], [9.0, -9.0, 0.0]]  # only the -100 row changes
    s2, _ = _student_teacher()
    s2.logits = torch.tensor(changed, requires_grad=True)
    assert ce(s2, t, torch.tensor(LABELS), None).item() == pytest.approx(base, abs=1e-7)


@pytest.mark.parametrize("labels", [None, torch.tensor([-100, -100])], ids=["none", "all-ignored"])
def test_ce_on_unlabelled_batch_is_zero_not_nan(labels: torch.Tensor | None) -> None:
    s, t = _student_teacher()
    value = build_loss({"kind": "ce"})(s, t, labels, None)
    assert value.item() == 0.0
    value.backward()  # still part of the graph: the training step must not break
    assert s.logits.grad is not None


def test_distill_loss_is_the_weighted_sum_of_its_parts() -> None:
    dl = DistillLoss(
        [{"kind": "kd_kl", "weight": 0.7, "temperature": 2.0}, {"kind": "ce", "weight": 0.3},
         {"kind": "ce", "weight": 0.5}],
        student_config=SAME_WIDTH, teacher_config=SAME_WIDTH,
    )
    s, t = _student_teacher()
    total, parts = dl(s, t, torch.tensor(LABELS), torch.tensor(MASK))
    assert list(parts) == ["kd_kl", "ce_1", "ce_2"]
    expected = 0.7 * _ref_kd_kl() + 0.3 * _ref_ce() + 0.5 * _ref_ce()
    assert math.isclose(total.item(), expected, rel_tol=TOL)
    assert math.isclose(parts["kd_kl"].item(), _ref_kd_kl(), rel_tol=TOL)
    assert not parts["ce_1"].requires_grad and total.requires_grad


def test_projection_is_a_parameter_and_receives_gradient() -> None:
    torch.manual_seed(0)
    student_cfg = SimpleNamespace(hidden_size=3, num_hidden_layers=1)
    dl = DistillLoss([{"kind": "hidden_mse", "layer_map": [[0, 0]]}],
                     student_config=student_cfg, teacher_config=SAME_WIDTH)
    params = list(dl.parameters())
    assert [p.shape for p in params] == [torch.Size([2, 3]), torch.Size([2])]  # Linear(3 -> 2)
    s_hidden = torch.randn(2, 3, 3, requires_grad=True)
    s = SequenceClassifierOutput(logits=torch.zeros(2, 3), hidden_states=(s_hidden, s_hidden))
    _, t = _student_teacher()
    total, _ = dl(s, t, None, torch.tensor(MASK))
    total.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
    assert s_hidden.grad is not None and s_hidden.grad[1, 2].abs().sum() == 0  # padding got no gradient


def test_same_width_has_no_parameters() -> None:
    dl = DistillLoss([{"kind": "hidden_cosine", "layer_map": [[0, 0]]}],
                     student_config=SAME_WIDTH, teacher_config=SAME_WIDTH)
    assert list(dl.parameters()) == []


def test_unknown_kind_lists_valid_kinds() -> None:
    with pytest.raises(ValidationError) as err:
        parse_loss_config({"kind": "mse_logits"})
    for kind in LOSS_KINDS:
        assert kind in str(err.value)


def test_unknown_key_lists_valid_keys() -> None:
    with pytest.raises(ValidationError, match=r"\['temprature'\].*valid keys: \['kind', 'temperature', 'weight'\]"):
        parse_loss_config({"kind": "kd_kl", "temprature": 2})


@pytest.mark.parametrize(
    ("layer_map", "message"),
    [([[6, 0]], "teacher layer 6 out of range for a model with 1 layers"),
     ([[0, -2]], "student layer -2 out of range")],
    ids=["teacher-too-deep", "student-negative-too-far"],
)
def test_layer_out_of_range_is_quoted(layer_map: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_loss({"kind": "attention", "layer_map": layer_map}, SAME_WIDTH, SAME_WIDTH)


def test_layer_mapped_loss_without_model_configs_says_what_to_pass() -> None:
    with pytest.raises(ValueError, match="student_config=student.config"):
        DistillLoss([{"kind": "hidden_mse", "layer_map": [[0, 0]]}])


def test_missing_attentions_say_how_to_get_them() -> None:
    loss = build_loss({"kind": "attention", "layer_map": [[0, 0]]}, SAME_WIDTH, SAME_WIDTH)
    s = SequenceClassifierOutput(logits=torch.zeros(2, 3), attentions=())
    with pytest.raises(ValueError, match="output_attentions=True and attn_implementation='eager'"):
        loss(s, s, None, None)


def test_on_real_bert_outputs_a_full_copy_has_zero_transfer_loss() -> None:
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, num_labels=3, attn_implementation="eager")
    teacher = BertForSequenceClassification(cfg).eval()
    ids = torch.randint(1, 50, (2, 5))
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    kw = {"input_ids": ids, "attention_mask": mask, "output_hidden_states": True, "output_attentions": True}
    # A student holding only teacher layer 1 feeds it the embeddings instead of layer 0's output,
    # so its hidden states differ from the teacher's layer 1: the loss must see that.
    partial = student_from_layers(teacher, [1])
    dl = DistillLoss([{"kind": "hidden_mse", "layer_map": [[1, 0]]}],
                     student_config=partial.config, teacher_config=teacher.config)
    with torch.no_grad():
        _, parts = dl(partial(**kw), teacher(**kw), None, mask)
    assert parts["hidden_mse"].item() > 1e-4
    full = student_from_layers(teacher, [0, 1])
    dl_full = DistillLoss([{"kind": "hidden_mse", "layer_map": [[0, 0], [1, 1]]},
                           {"kind": "attention", "layer_map": [[0, 0], [1, 1]]}],
                          student_config=full.config, teacher_config=teacher.config)
    with torch.no_grad():
        _, parts = dl_full(full(**kw), teacher(**kw), None, mask)
    assert dl_full.needs_hidden_states and dl_full.needs_attentions
    assert parts["hidden_mse"].item() == 0.0 and parts["attention"].item() == 0.0
