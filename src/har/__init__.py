"""har: human action recognition in videos (Kinetics-400, Hara et al. 3D ResNets).

>>> import har                                                   # doctest: +SKIP
>>> rec = har.Recognizer(weights="resnet-34-kinetics.pth")       # doctest: +SKIP
>>> rec.predict("video.mp4").top[0]                              # doctest: +SKIP
Prediction(label='arm wrestling', score=0.91)
"""

__version__ = "0.1.0"

from .errors import DecodeError, HarError, ModelNotFoundError, WeightsError  # noqa: E402
from .models.zoo import list_models, load_model  # noqa: E402
from .recognizer import Recognizer  # noqa: E402
from .results import ClipResult, Prediction, VideoResult  # noqa: E402

__all__ = ["Recognizer", "VideoResult", "ClipResult", "Prediction", "load_model",
           "list_models", "HarError", "DecodeError", "WeightsError", "ModelNotFoundError",
           "__version__"]
