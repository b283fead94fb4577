"""jaxgeo.train: shared training pieces (NNX modules as pure functions, optimiser steps,
data parallelism, schedules, run folders with checkpoints and resume)."""

from .run import RunDir as RunDir
from .run import progress as progress
from .schedules import warmup_cosine as warmup_cosine
from .state import ModuleDef as ModuleDef
from .state import count_params as count_params
from .state import init_module as init_module
from .state import split_module as split_module
from .step import DATA_AXIS as DATA_AXIS
from .step import TrainState as TrainState
from .step import data_mesh as data_mesh
from .step import data_parallel as data_parallel
from .step import init_train_state as init_train_state
from .step import make_train_step as make_train_step
from .step import shard_batch as shard_batch
