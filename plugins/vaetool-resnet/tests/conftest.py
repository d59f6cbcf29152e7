import torch

# The models here are tiny: one thread is fastest, and on a busy machine a second OpenMP thread
# spin-waits for a core and makes small convolutions far slower.
torch.set_num_threads(1)
