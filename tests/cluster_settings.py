"""Settings of a real qcluster started by the fault-injection tests (tests/batches/test_faults.py).

The product's own settings, with django-q2's clock shortened so that re-delivery of a task
whose worker died (retry) happens in seconds instead of minutes. Everything else, including
the database, the media folder and the model registry, comes from the environment the test
passes, so the cluster works on the test's own data.
"""

import os

from refundsite.settings import *  # noqa: F403
from refundsite.settings import Q_CLUSTER

Q_CLUSTER = {**Q_CLUSTER, "timeout": 20, "retry": 25, "poll": 0.2}

# Fault injection: a worker that decodes the stored photo whose name contains POISON_PHOTO
# dies on the spot (os._exit), every time, like a decoder crash in native code.
if os.environ.get("POISON_PHOTO"):
    from classifier import imaging

    _open_image = imaging.open_image

    def _poisoned_open_image(source, **kwargs):
        if os.environ["POISON_PHOTO"] in str(source):
            os._exit(70)
        return _open_image(source, **kwargs)

    imaging.open_image = _poisoned_open_image
