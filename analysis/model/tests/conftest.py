import os
import sys

# Make `import otomodel` work when pytest runs from the repository root.
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))
sys.path.insert(0, os.path.dirname(__file__))

import torch  # noqa: E402

# Two cores are shared with other work; keep the tests polite and fast.
torch.set_num_threads(min(2, torch.get_num_threads() or 1))
