"""Compound scaling (EfficientNet): families, the alpha/beta/gamma/phi rules, and the coefficient search.

- `Family` and its implementations map (width_mult, depth_mult, resolution) to a model.
- `CompoundScaler` (Eq. 3) and `PublishedScaler` (the released B0-B7 rows) map phi to multipliers;
  `scaler.family(baseline, phis)` builds and counts every member.
- `CoefficientSpace`, `ScaledMemberEvaluator` and `MACsScore` are step 1 of the paper (the grid
  search at phi = 1) in the form the experiment machinery runs.
"""

from nasforge.nn.mbconv import round_filters, round_repeats
from nasforge.scaling.coefficients import (
    CoefficientSpace,
    CoefficientTriple,
    MACsScore,
    ScaledMemberEvaluator,
    admissible_triples,
    balanced_returns_score,
    candidates,
    single_dimension_alternatives,
)
from nasforge.scaling.compound import (
    EFFICIENTNET_COEFFICIENTS,
    EFFICIENTNET_PUBLISHED,
    CompoundScaler,
    Member,
    PublishedScaler,
    Scaler,
    published_vs_formula,
    round_resolution,
)
from nasforge.scaling.family import (
    FAMILIES,
    EfficientNetFamily,
    Family,
    MBConvFamily,
    NASNetFamily,
    ScalingInfo,
    family_from,
    family_from_architecture,
    family_from_model,
    get_family,
)

__all__ = [
    "EFFICIENTNET_COEFFICIENTS",
    "EFFICIENTNET_PUBLISHED",
    "FAMILIES",
    "CoefficientSpace",
    "CoefficientTriple",
    "CompoundScaler",
    "EfficientNetFamily",
    "Family",
    "MACsScore",
    "MBConvFamily",
    "Member",
    "NASNetFamily",
    "PublishedScaler",
    "ScaledMemberEvaluator",
    "Scaler",
    "ScalingInfo",
    "admissible_triples",
    "balanced_returns_score",
    "candidates",
    "family_from",
    "family_from_architecture",
    "family_from_model",
    "get_family",
    "published_vs_formula",
    "round_filters",
    "round_repeats",
    "round_resolution",
    "single_dimension_alternatives",
]
