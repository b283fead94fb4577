"""Location encoders on the sphere (Rußwurm et al. 2024): encodings × networks, in Flax NNX.

Public API::

    from jaxgeo.locenc import Encoding, ModelConfig, LocationEncoder, TrainConfig, fit
    enc = Encoding("sh", degree=40)                 # or wrap, grid, theory, spherec, ...
    model = LocationEncoder(ModelConfig(encoding=enc, network="siren", n_out=16), rngs=nnx.Rngs(0))
    logits = model(lon_deg, lat_deg);  features = model.embed(lon_deg, lat_deg)
    save_encoder(model, "enc/");  model, meta = load_encoder("enc/")

See ``docs/locenc.md``.
"""

from .datasets import DATASETS as DATASETS
from .datasets import Dataset as Dataset
from .datasets import Split as Split
from .datasets import fibonacci_lattice as fibonacci_lattice
from .datasets import load_dataset as load_dataset
from .datasets import map_grid as map_grid
from .datasets import uniform_sphere as uniform_sphere
from .encodings import ENCODINGS as ENCODINGS
from .encodings import Encoding as Encoding
from .model import LocationEncoder as LocationEncoder
from .model import ModelConfig as ModelConfig
from .model import load_encoder as load_encoder
from .model import params_dict as params_dict
from .model import save_encoder as save_encoder
from .model import set_params as set_params
from .networks import NETWORKS as NETWORKS
from .networks import FCNet as FCNet
from .networks import LinearNet as LinearNet
from .networks import Siren as Siren
from .networks import make_network as make_network
from .train import FitResult as FitResult
from .train import TrainConfig as TrainConfig
from .train import classification_metrics as classification_metrics
from .train import fit as fit
from .train import make_evaluate as make_evaluate
from .train import make_train_epoch as make_train_epoch
from .train import predict as predict
from .train import regression_metrics as regression_metrics
