"""The DICOM objects a study's prediction is returned as, made with highdicom.

* **SR** (:func:`build_sr`): a Comprehensive 3D SR following TID 1500 (Measurement Report) in the
  study of the input: one measurement group (TID 1501) per breast with a view used, its finding
  site (Breast + laterality), the probability of malignancy (DCM 111047 "Probability of cancer")
  and of a benign finding (private code ``MK0001`` of the coding scheme ``99MAMMOKIT``: DICOM has
  no standard concept for it; the scheme is declared in CodingSchemeIdentificationSequence), both
  numbers in UCUM ``1``; the algorithm (name, version, checkpoint hashes as parameters); the source
  images of the breast; an image library (TID 1600) of the views used; one TEXT item "Comment"
  per image not used, with the reason. A later version references the earlier ones
  (PredecessorDocumentsSequence). VerificationFlag UNVERIFIED: a model wrote it.
* **SEG** (:func:`build_seg`): per view, a FRACTIONAL (PROBABILITY) Segmentation with the malignant
  and benign heatmaps as two segments, pixel-aligned to the source image (MG has no Frame of
  Reference: highdicom then requires one single-frame source image of the same Rows x Columns).

Inputs are the received datasets; attributes highdicom needs but de-identified mammograms often
lack (Type 2 patient / study attributes, PatientOrientation) are filled in on copies as empty
values, never on the received files.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mammokit import __version__

__all__ = ["ModelDescription", "build_sr", "build_seg", "read_sr_probabilities", "read_seg_maps", "BENIGN_CODE", "PRIVATE_SCHEME",
           "device_uid"]

PRIVATE_SCHEME = "99MAMMOKIT"
BENIGN_CODE = ("MK0001", PRIVATE_SCHEME, "Probability of benign finding")
MANUFACTURER = "mammokit"
SR_SERIES_NUMBER = 9001
SEG_SERIES_NUMBER = 9002
RUO = "research use only"

# Type 2 attributes highdicom reads from the evidence by attribute access.
_TYPE2 = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID", "StudyDate",
          "StudyTime", "ReferringPhysicianName")


@dataclass(frozen=True)
class ModelDescription:
    """What the reports say about the models: ``name`` (e.g. ``mammokit view_wise``), ``version``
    (mammokit's), ``checkpoints`` ``[(role, sha256)]``, ``settings`` (e.g. ``{"tta": "10"}``)."""

    name: str
    version: str = __version__
    checkpoints: tuple[tuple[str, str], ...] = ()
    settings: tuple[tuple[str, str], ...] = ()

    @property
    def version_string(self) -> str:
        """``0.1.0+<first 12 hex of the first checkpoint's sha256>`` (fits LO, 64 chars)."""
        return f"{self.version}+{self.checkpoints[0][1][:12]}" if self.checkpoints else self.version

    def parameters(self) -> list[str]:
        return [f"{role}_sha256={sha}" for role, sha in self.checkpoints] + [f"{k}={v}" for k, v in self.settings]


def device_uid(ae_title: str) -> str:
    """A stable UID for this node (the SR's observer device), derived from its AE title."""
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=["mammokit device", ae_title])


def _fill(ds):
    """A copy with the attributes highdicom needs present (empty where the file has none)."""
    out = copy.copy(ds)  # shallow: pixel data shared, top-level elements replaced only
    for keyword in _TYPE2:
        if keyword not in out:
            setattr(out, keyword, "")
    if "PatientOrientation" not in out or not out.PatientOrientation:
        out.PatientOrientation = _orientation_guess(out)
    if "ImagerPixelSpacing" not in out:
        out.ImagerPixelSpacing = out.get("PixelSpacing") or [1, 1]
    return out


def _orientation_guess(ds) -> list[str]:
    # The display convention mammokit's reader produces (and what the SR describes): L breast
    # rows run to Anterior, R breast to Posterior; columns Foot (CC) or Foot (MLO, approximately).
    lat = str(ds.get("ImageLaterality") or ds.get("Laterality") or "").upper()
    return ["A" if lat == "L" else "P", "F"]


def _breast_site(side: str):
    import highdicom as hd
    from pydicom.sr.codedict import codes

    return hd.sr.FindingSite(anatomic_location=codes.SCT.Breast,
                             laterality=codes.SCT.Left if side == "L" else codes.SCT.Right)


def build_sr(
    views: Mapping[str, object],
    probabilities: Mapping[str, Mapping[str, float]],
    model: ModelDescription,
    *,
    rejected: Sequence[tuple[object, str]] = (),
    previous: Sequence[object] = (),
    ae_title: str = "MAMMOKIT",
    series_uid: str | None = None,
    instance_number: int = 1,
):
    """The TID 1500 SR of one study (module docstring).

    Args:
        views: ``{view: pydicom Dataset}`` of the images used (``"L-CC"``...).
        probabilities: ``{"L": {"malignant": p, "benign": p}, "R": ...}``; NaN (no view of that
            breast) leaves the breast's group out.
        model: the models' description.
        rejected: ``[(dataset or description string, reason)]`` of the images not used.
        previous: earlier SR versions of this study (datasets), referenced as predecessors.
        instance_number: this version's number (1, 2, ...).

    Returns:
        ``highdicom.sr.Comprehensive3DSR``.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    if not views:
        raise ValueError("an SR needs at least one image used")
    evidence = {v: _fill(ds) for v, ds in views.items()}
    algo = hd.sr.AlgorithmIdentification(name=model.name, version=model.version_string,
                                         parameters=model.parameters() or None)
    ctx = hd.sr.ObservationContext(observer_device_context=hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=device_uid(ae_title), name=ae_title, manufacturer_name=MANUFACTURER, model_name=model.name[:64])))
    benign = hd.sr.CodedConcept(*BENIGN_CODE)
    groups = []
    for side in ("L", "R"):
        imgs = [evidence[v] for v in sorted(evidence) if v.startswith(side)]
        p = probabilities.get(side, {})
        if not imgs or not all(np.isfinite(p.get(k, np.nan)) for k in ("malignant", "benign")):
            continue
        site = [_breast_site(side)]
        meas = [
            hd.sr.Measurement(name=codes.DCM.ProbabilityOfCancer, value=float(p["malignant"]),
                              unit=codes.UCUM.NoUnits, algorithm_id=algo, finding_sites=site),
            hd.sr.Measurement(name=benign, value=float(p["benign"]), unit=codes.UCUM.NoUnits,
                              algorithm_id=algo, finding_sites=site),
        ]
        groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=f"{side} breast"),
            finding_type=codes.SCT.Breast, algorithm_id=algo, finding_sites=site, measurements=meas,
            source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(d) for d in imgs]))
    report = hd.sr.MeasurementReport(
        observation_context=ctx, procedure_reported=codes.SCT.Mammography, imaging_measurements=groups or None, referenced_images=list(evidence.values()))
    for item, reason in rejected:
        text = _describe(item)
        report[0].ContentSequence.append(hd.sr.TextContentItem(
            name=codes.DCM.Comment, value=f"not used: {text}: {reason}"[:1024],
            relationship_type=hd.sr.RelationshipTypeValues.CONTAINS))
    first = next(iter(evidence.values()))
    sr = hd.sr.Comprehensive3DSR(
        evidence=list(evidence.values()), content=report, series_instance_uid=series_uid or hd.UID(),
        series_number=SR_SERIES_NUMBER, sop_instance_uid=hd.UID(), instance_number=instance_number,
        manufacturer=MANUFACTURER, is_complete=True, previous_versions=list(previous) or None,
        series_description=f"mammokit AI result - {RUO}", institution_name=first.get("InstitutionName"),
    )
    _declare_scheme(sr)
    sr.SoftwareVersions = __version__
    return sr


def _describe(item) -> str:
    if isinstance(item, str):
        return item
    parts = [str(item.get("ImageLaterality") or item.get("Laterality") or "?"),
             str(item.get("ViewPosition") or "?"), str(item.get("Modality") or "?"),
             f"SOP {item.get('SOPInstanceUID', '?')}"]
    return " ".join(parts)


def _declare_scheme(ds) -> None:
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DicomSequence

    item = Dataset()
    item.CodingSchemeDesignator = PRIVATE_SCHEME
    item.CodingSchemeName = "mammokit private codes"
    item.CodingSchemeResponsibleOrganization = "mammokit"
    seq = list(ds.get("CodingSchemeIdentificationSequence") or [])
    ds.CodingSchemeIdentificationSequence = DicomSequence([*seq, item])


def build_seg(source, maps: np.ndarray, model: ModelDescription, *, series_uid: str | None = None,
              instance_number: int = 1, series_number: int = SEG_SERIES_NUMBER):
    """A fractional probability SEG for one view.

    Args:
        source: the received image (pydicom Dataset).
        maps: ``float32 [2, Rows, Columns]`` in [0, 1] on the source's stored pixel grid: channel
            0 malignant, 1 benign.

    Returns:
        ``highdicom.seg.Segmentation`` with segments 1 "malignant", 2 "benign".
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    maps = np.asarray(maps, dtype=np.float32)
    rows, cols = int(source.Rows), int(source.Columns)
    if maps.shape != (2, rows, cols):
        raise ValueError(f"maps of shape {maps.shape} do not fit the image ({rows} x {cols})")
    algo = hd.AlgorithmIdentificationSequence(name=model.name[:64], family=codes.cid7162.ArtificialIntelligence,
                                              version=model.version_string[:64])
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=i + 1, segment_label=label, segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=code, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algo)
        for i, (label, code) in enumerate((("malignant", codes.SCT.Malignant), ("benign", codes.SCT.Benign)))
    ]
    src = _fill(source)
    seg = hd.seg.Segmentation(
        source_images=[src], pixel_array=np.clip(np.moveaxis(maps, 0, -1), 0.0, 1.0)[None],
        segmentation_type=hd.seg.SegmentationTypeValues.FRACTIONAL,
        fractional_type=hd.seg.SegmentationFractionalTypeValues.PROBABILITY, max_fractional_value=255,
        segment_descriptions=descriptions, series_instance_uid=series_uid or hd.UID(), series_number=series_number,
        sop_instance_uid=hd.UID(), instance_number=instance_number, manufacturer=MANUFACTURER,
        manufacturer_model_name=model.name[:64], software_versions=__version__,
        device_serial_number=model.version_string[:64], omit_empty_frames=False,
        series_description=f"mammokit heatmaps - {RUO}",
    )
    # General Image: Type 2C without a Frame of Reference; the SEG shares its source's grid.
    seg.PatientOrientation = src.PatientOrientation
    return seg


def read_seg_maps(path_or_ds) -> dict[str, np.ndarray]:
    """``{segment label: float32 [Rows, Columns]}`` of a fractional SEG written by
    :func:`build_seg` (pydicom: highdicom 0.28's reader wants SliceThickness in the Pixel
    Measures, which a projection image has not)."""
    import pydicom

    ds = path_or_ds if isinstance(path_or_ds, pydicom.Dataset) else pydicom.dcmread(path_or_ds)
    frames = ds.pixel_array.reshape(-1, int(ds.Rows), int(ds.Columns)).astype(np.float32)
    frames /= float(ds.MaximumFractionalValue)
    out = {}
    for frame, item in zip(frames, ds.PerFrameFunctionalGroupsSequence):
        number = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        label = next(str(s.SegmentLabel) for s in ds.SegmentSequence if int(s.SegmentNumber) == number)
        out[label] = frame
    return out


def read_sr_probabilities(path_or_ds) -> dict[str, dict[str, float]]:
    """``{"L": {"malignant": p, "benign": p}, ...}`` read back from an SR written by
    :func:`build_sr` (with highdicom's TID 1500 parser)."""
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    ds = path_or_ds if isinstance(path_or_ds, pydicom.Dataset) else pydicom.dcmread(path_or_ds)
    sr = hd.sr.Comprehensive3DSR.from_dataset(ds)
    benign = hd.sr.CodedConcept(*BENIGN_CODE)
    out: dict[str, dict[str, float]] = {}
    for group in sr.content.get_image_measurement_groups():
        side = "L" if group.tracking_identifier.startswith("L") else "R"
        for kind, name in (("malignant", codes.DCM.ProbabilityOfCancer), ("benign", benign)):
            found = group.get_measurements(name=name)
            if found:
                out.setdefault(side, {})[kind] = float(found[0].value)
    return out
