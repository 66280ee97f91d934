import os

import torch
from hypothesis import HealthCheck, settings

# Two cores here: keep intra-op threads predictable and the property tests bounded.
torch.set_num_threads(min(2, os.cpu_count() or 1))
settings.register_profile("nasforge", max_examples=60, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("nasforge")
