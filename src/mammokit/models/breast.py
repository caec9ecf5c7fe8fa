"""Breast-level models: four ResNet-22 columns (CC and MLO weights shared) and a variant's heads.

Variants (paper Sec. IV, Fig. 5), every one with 1,024 hidden units between the column outputs
and the output layers:

============  ================================================  ==========================
variant       first FC layer(s) (name: input -> units)          output groups (labels)
============  ================================================  ==========================
view_wise     fc1_cc: [L-CC, R-CC] 512 -> 512; fc1_mlo: same     "CC", "MLO" (all four)
image_wise    fc1_{lcc,rcc,lmlo,rmlo}: 256 -> 256 each          "L-CC"... (its breast's two)
breast_wise   fc1_left: [L-CC, L-MLO] 512 -> 512; fc1_right     "L", "R" (its breast's two)
joint         fc1_joint: all four 1024 -> 1024                  "joint" (all four)
============  ================================================  ==========================

Each output layer (``output_layer_<g>.fc_layer``) produces ``L x K`` logits, viewed as
``[B, L, K]``: ``L`` labels of ``K`` classes (cancer: 2-way per label, column 1 = the finding is
present; BI-RADS: one 3-way label). Parameter and attribute names follow the authors' files, so
their view-wise and image-wise weights load after a prefix change (``mammokit.models.convert``).

Input tensors are keyed by view (``VIEWS``), ``[B, C, H, W]``, already flipped (chest wall on
the left) and standardised; C = 1 (image) or 3 (image, benign heatmap, malignant heatmap).

Missing views (exams as they come: one to three views), the same rule for every variant:

* a missing view contributes a zero feature vector in place of its column's output (views
  missing from the whole batch are left out of the dict; views missing for some exams of a batch
  are marked in a ``present`` mask ``[B, 4]`` in ``VIEWS`` order, their input windows ignored);
* an output group predicts a breast's labels only when at least one view *of that breast* among
  the group's inputs is present (:meth:`BreastModel.label_mask`): view-wise, the CC head predicts
  the left breast only with L-CC, the MLO head only with L-MLO; image-wise, each view's head its
  own breast; breast-wise, a breast's branch with either of its views; joint, with either;
* the loss and the averaged prediction use only those (group, label) pairs; a breast with no view
  at all gets no prediction (NaN).

With all four views the computation is exactly the paper's.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from mammokit.config import LABEL_COLUMNS, VIEWS
from mammokit.models._registry import register_model
from mammokit.models.resnet22 import COLUMN_CHANNELS, ResNet22
from mammokit.views import view_kind

TASK_CLASSES = {"cancer": 2, "birads": 3}
VARIANTS = ("view_wise", "image_wise", "breast_wise", "joint")
BIRADS_LABELS = ("birads",)
_LEFT = ("left_benign", "left_malignant")
_RIGHT = ("right_benign", "right_malignant")

# variant -> [(group name, parameter-name suffix, input views, cancer labels)]
_GROUPS: dict[str, list[tuple[str, str, tuple[str, ...], tuple[str, ...]]]] = {
    "view_wise": [
        ("CC", "cc", ("L-CC", "R-CC"), LABEL_COLUMNS),
        ("MLO", "mlo", ("L-MLO", "R-MLO"), LABEL_COLUMNS),
    ],
    "image_wise": [
        ("L-CC", "lcc", ("L-CC",), _LEFT),
        ("R-CC", "rcc", ("R-CC",), _RIGHT),
        ("L-MLO", "lmlo", ("L-MLO",), _LEFT),
        ("R-MLO", "rmlo", ("R-MLO",), _RIGHT),
    ],
    "breast_wise": [
        ("L", "left", ("L-CC", "L-MLO"), _LEFT),
        ("R", "right", ("R-CC", "R-MLO"), _RIGHT),
    ],
    "joint": [("joint", "joint", VIEWS, LABEL_COLUMNS)],
}


def column_name(view: str) -> str:
    """The shared column a view goes through: ``"cc"`` for L-CC / R-CC, ``"mlo"`` for the MLOs."""
    return view_kind(view).lower()


class OutputLayer(nn.Module):
    """A linear layer whose ``L * K`` outputs are viewed as ``[B, L, K]`` logits.

    The weight rows are label-major (label 0's K classes, then label 1's, ...), as the authors'
    ``OutputLayer`` with ``output_shape=(L, K)``.
    """

    def __init__(self, in_features: int, num_labels: int, num_classes: int) -> None:
        super().__init__()
        self.num_labels, self.num_classes = num_labels, num_classes
        self.fc_layer = nn.Linear(in_features, num_labels * num_classes)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.fc_layer(h).view(h.shape[0], self.num_labels, self.num_classes)


class BreastModel(nn.Module):
    """Four-view breast-level model (all four variants of the paper).

    Args:
        variant: ``view_wise`` (the paper's primary model), ``image_wise``, ``breast_wise`` or
            ``joint``.
        in_channels: 1 (image only) or 3 (image, benign heatmap, malignant heatmap).
        task: ``"cancer"`` (benign / malignant per breast, 2-way each) or ``"birads"`` (one
            3-way label: BI-RADS 0 / 1 / 2, the pretraining task).
        input_noise_std: std of the Gaussian noise added to every input in training mode only
            (paper: 0.01); 0 disables it.

    Attributes:
        output_labels: ``{group: labels}`` of :meth:`forward`'s output groups.
    """

    def __init__(
        self, variant: str = "view_wise", in_channels: int = 1, task: str = "cancer", input_noise_std: float = 0.01
    ) -> None:
        super().__init__()
        if variant not in _GROUPS:
            raise ValueError(f"unknown breast-level variant {variant!r}; choose one of {VARIANTS}")
        if task not in TASK_CLASSES:
            raise ValueError(f"unknown task {task!r}; choose one of {tuple(TASK_CLASSES)}")
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 (image) or 3 (image + 2 heatmaps), got {in_channels}")
        if input_noise_std < 0:
            raise ValueError(f"input_noise_std must be >= 0, got {input_noise_std}")
        self.variant, self.task, self.in_channels = variant, task, in_channels
        self.input_noise_std = float(input_noise_std)
        self.num_classes = TASK_CLASSES[task]
        # Two columns only: L-CC and R-CC run through ``columns.cc``, the MLOs through
        # ``columns.mlo`` (weight sharing by reuse, so every tensor is stored once).
        self.columns = nn.ModuleDict({"cc": ResNet22(in_channels), "mlo": ResNet22(in_channels)})
        self._groups = [
            (name, suffix, views, BIRADS_LABELS if task == "birads" else labels)
            for name, suffix, views, labels in _GROUPS[variant]
        ]
        for _, suffix, views, labels in self._groups:
            width = COLUMN_CHANNELS * len(views)
            self.add_module(f"fc1_{suffix}", nn.Linear(width, width))
            self.add_module(f"output_layer_{suffix}", OutputLayer(width, len(labels), self.num_classes))
        self.output_labels: dict[str, tuple[str, ...]] = {g: labels for g, _, _, labels in self._groups}
        self.prediction_columns: tuple[str, ...] = BIRADS_COLUMNS if task == "birads" else LABEL_COLUMNS

    # ------------------------------------------------------------------ inputs
    def _check_views(self, views: dict[str, torch.Tensor | None]) -> dict[str, torch.Tensor]:
        present = {v: x for v, x in views.items() if x is not None}
        unknown = sorted(set(present) - set(VIEWS))
        if unknown:
            raise ValueError(f"unknown view(s) {unknown}; expected keys among {VIEWS}")
        if not present:
            raise ValueError("no views given")
        batch = None
        for v, x in present.items():
            if x.ndim != 4 or x.shape[1] != self.in_channels:
                raise ValueError(
                    f"view {v}: expected a [B, {self.in_channels}, H, W] tensor, got shape {tuple(x.shape)}"
                )
            if batch is not None and x.shape[0] != batch:
                raise ValueError(f"view {v}: batch size {x.shape[0]} differs from the other views' {batch}")
            batch = x.shape[0]
        return present

    def availability(self, views: dict[str, torch.Tensor | None], present: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, 4]`` bool in ``VIEWS`` order: which views each exam has (a view absent from
        ``views`` is absent for every exam; ``present`` marks exams missing a view in a batch)."""
        given = self._check_views(views)
        first = next(iter(given.values()))
        avail = torch.tensor([v in given for v in VIEWS], device=first.device).expand(first.shape[0], -1)
        if present is not None:
            avail = avail & present.to(device=first.device, dtype=torch.bool)
        return avail

    def label_mask(self, avail: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{group: [B, L] bool}``: whether each group predicts each of its labels for each exam,
        from the views available (``[B, 4]``, :meth:`availability`; rule in the module docstring)."""
        out = {}
        for name, _, views, labels in self._groups:
            cols = []
            for label in labels:
                side = {"left": "L", "right": "R"}.get(label.split("_")[0])  # "birads": either breast
                idx = [VIEWS.index(v) for v in views if side is None or v.startswith(side)]
                cols.append(avail[:, idx].any(dim=1) if idx else torch.zeros_like(avail[:, 0]))
            out[name] = torch.stack(cols, dim=1)
        return out

    # ------------------------------------------------------------------ stages
    def forward_features(self, views: dict[str, torch.Tensor], present: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Column outputs, globally average-pooled: ``{view: [B, 256]}`` for all four views; a
        view absent from ``views`` (or masked out by ``present`` ``[B, 4]``) gives zeros.

        Adds the training-time input noise, so :meth:`forward` calls this once.
        """
        given = self._check_views(views)
        feats = {}
        for view, x in given.items():
            if self.training and self.input_noise_std > 0:
                x = x + torch.randn_like(x) * self.input_noise_std
            feats[view] = self.columns[column_name(view)](x).mean(dim=(2, 3))
        first = next(iter(feats.values()))
        if present is not None and not bool(present.all()):
            # Masked after the column: an exam missing a view sees a zero feature vector for it.
            keep = present.to(device=first.device, dtype=first.dtype)
            feats = {v: f * keep[:, VIEWS.index(v), None] for v, f in feats.items()}
        for view in VIEWS:
            if view not in feats:
                feats[view] = torch.zeros_like(first)
        return {v: feats[v] for v in VIEWS}

    def _hidden(self, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        hidden = {}
        for name, suffix, views, _ in self._groups:
            h = torch.cat([feats[v] for v in views], dim=1)
            hidden[name] = F.relu(getattr(self, f"fc1_{suffix}")(h))
        return hidden

    def forward_hidden(self, views: dict[str, torch.Tensor], present: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """First-FC activations per output group, e.g. view_wise ``{"CC": [B, 512], "MLO": [B, 512]}``,
        image_wise ``{"L-CC": [B, 256], ...}``, breast_wise ``{"L": [B, 512], "R": ...}``,
        joint ``{"joint": [B, 1024]}``."""
        return self._hidden(self.forward_features(views, present))

    def forward_head(self, hidden: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Output layers: ``{group: [B, L, K]}`` logits from :meth:`forward_hidden`'s activations."""
        suffix = {name: s for name, s, _, _ in self._groups}
        return {g: getattr(self, f"output_layer_{suffix[g]}")(h) for g, h in hidden.items()}

    def forward(self, views: dict[str, torch.Tensor], present: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``{view: [B, C, H, W]}`` -> ``{group: logits [B, L, K]}`` (groups in ``output_labels``).

        Every group is computed; with missing views, :meth:`label_mask` says which of its labels
        it actually predicts (the others rest on zero features only).
        """
        return self.forward_head(self.forward_hidden(views, present))

    @torch.no_grad()
    def predict_proba(self, views: dict[str, torch.Tensor], present: torch.Tensor | None = None) -> torch.Tensor:
        """Probabilities per exam, averaged over the output groups that predict each label.

        Returns ``[B, 4]`` in ``LABEL_COLUMNS`` order (probability of the finding: softmax
        column 1), or ``[B, 3]`` for BI-RADS (softmax over BI-RADS 0 / 1 / 2). A breast with none
        of its views gets NaN.
        """
        avail = self.availability(views, present)
        mask = None if bool(avail.all()) else self.label_mask(avail)
        return probabilities_from_logits(self(views, present), self.output_labels, self.task, mask)


BIRADS_COLUMNS = ("birads_0", "birads_1", "birads_2")


def probabilities_from_logits(
    logits: dict[str, torch.Tensor], output_labels: dict[str, tuple[str, ...]], task: str,
    mask: dict[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Mean over groups of per-label probabilities: ``{group: [B, L, K]}`` -> ``[B, 4]`` or ``[B, 3]``.

    ``mask`` (:meth:`BreastModel.label_mask`, ``{group: [B, L] bool}``) leaves out the (group,
    label) pairs a group does not predict for an exam; a label predicted by no group is NaN.
    """
    first = next(iter(logits.values()))
    batch = first.shape[0]
    if task == "birads":
        probs = torch.stack([F.softmax(x.float(), dim=-1)[:, 0, :] for x in logits.values()])  # [G, B, 3]
        if mask is None:
            return probs.mean(0)
        m = torch.stack([mask[g][:, 0] for g in logits]).float()[..., None]  # [G, B, 1]
        return (probs * m).sum(0) / m.sum(0)
    total = torch.zeros(batch, len(LABEL_COLUMNS), device=first.device)
    count = torch.zeros(batch, len(LABEL_COLUMNS), device=first.device)
    for group, x in logits.items():
        p = F.softmax(x.float(), dim=-1)[..., 1]  # [B, L]
        m = torch.ones_like(p) if mask is None else mask[group].to(p.dtype)
        for j, label in enumerate(output_labels[group]):
            col = LABEL_COLUMNS.index(label)
            total[:, col] += p[:, j] * m[:, j]
            count[:, col] += m[:, j]
    return total / count  # 0 / 0 = NaN for labels without a group


def _builder(variant: str):
    def build(in_channels: int = 1, task: str = "cancer", input_noise_std: float = 0.01) -> BreastModel:
        return BreastModel(variant, in_channels=in_channels, task=task, input_noise_std=input_noise_std)

    build.__name__ = variant
    build.__qualname__ = variant
    build.__doc__ = f"The {variant} breast-level model (see :class:`BreastModel`)."
    return build


view_wise = register_model(_builder("view_wise"))
image_wise = register_model(_builder("image_wise"))
breast_wise = register_model(_builder("breast_wise"))
joint = register_model(_builder("joint"))


def init_columns_from(model: BreastModel, source: BreastModel | dict[str, torch.Tensor]) -> None:
    """Initialise ``model``'s two ResNet-22 columns from another breast-level model (paper IV-C:
    the BI-RADS model's columns initialise the cancer model), in place; the heads are untouched.

    When ``model`` has 3 input channels and the source 1, the first kernel is duplicated across
    the new channels (paper: "the first kernel's weights are duplicated"); the rest is copied.
    """
    state = source.state_dict() if isinstance(source, nn.Module) else source
    cols = {k: v for k, v in state.items() if k.startswith("columns.")}
    own = {k: v for k, v in model.state_dict().items() if k.startswith("columns.")}
    if set(cols) != set(own):
        missing, extra = sorted(set(own) - set(cols)), sorted(set(cols) - set(own))
        raise ValueError(f"source columns do not match: missing {missing[:4]}, unexpected {extra[:4]}")
    for key, value in cols.items():
        target = own[key]
        if key.endswith("first_conv.weight") and value.shape[1] != target.shape[1]:
            if value.shape[1] != 1:
                raise ValueError(f"{key}: cannot expand {value.shape[1]} input channels to {target.shape[1]}")
            value = value.expand(-1, target.shape[1], -1, -1)
        if value.shape != target.shape:
            raise ValueError(f"{key}: shape {tuple(value.shape)} does not fit {tuple(target.shape)}")
        with torch.no_grad():
            target.copy_(value)
