"""Shared test settings: hypothesis without deadlines (torch's first call is slow), a bounded example count."""

import os

from hypothesis import HealthCheck, settings

settings.register_profile("default", deadline=None, max_examples=150,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
settings.register_profile("thorough", deadline=None, max_examples=2000,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# torchvision's CUDA wheel beside the CPU torch: define the operator schemas it needs before anything (transformers'
# models included) imports it (tests/torchvision_oracle.py)
from torchvision_oracle import define_missing_schemas  # noqa: E402

define_missing_schemas()
