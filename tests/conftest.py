import os

import torch
from hypothesis import HealthCheck, settings

# Tests run tiny models, where one intra-op thread is as fast as two and never oversubscribes
# the 2 cores when other processes (subprocess CLIs, Ray workers) run beside them.
torch.set_num_threads(1)
settings.register_profile("nasforge", max_examples=60, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("nasforge")
