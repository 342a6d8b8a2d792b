# Montage ingest worker image: a Dataflow custom container, and the worker
# environment of the portable runners (Flink, Spark: environment_type=DOCKER).
#
#   docker build -t REGION-docker.pkg.dev/PROJECT/REPO/montage-worker:TAG .
#   docker push REGION-docker.pkg.dev/PROJECT/REPO/montage-worker:TAG
#
# The base image is Apache Beam's Python SDK image of the pinned Beam version and
# Python; it carries the SDK harness entry point (/opt/apache/beam/boot).
ARG PYTHON_VERSION=3.11
ARG BEAM_VERSION=2.77.0
FROM apache/beam_python${PYTHON_VERSION}_sdk:${BEAM_VERSION}

# ffmpeg/ffprobe for frames and audio; nothing else from the system.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/*

# Idle OpenBLAS threads spin and cost more than the small mel products they speed up.
ENV OPENBLAS_NUM_THREADS=1

WORKDIR /opt/montage
# The production packages only: devtools/, tests/ and bench/ never enter the image
# (.dockerignore keeps them out of the build context too). ingest/pipelines.yaml links
# to the top-level file; the installed package carries its content.
COPY pyproject.toml README.md pipelines.yaml ./
COPY ingest ./ingest
COPY shards ./shards
COPY model ./model
# The ingest side with what the profiles write to: gs:// (gcsfs, Beam's gcp extra) and
# s3:// (s3fs). Every version comes from pyproject.toml (no pin is written here; a test
# checks), never torch. `pip check`: the base image's packages and ours agree.
# DL3013 (pin versions in pip) reads `.[gcp,aws]` as a package name; it is this project,
# whose pins are in pyproject.toml.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[gcp,aws]" \
    && pip check

# From outside the source folder, so that what is imported is what was installed.
WORKDIR /
RUN python -c "import apache_beam, yt_dlp, webvtt, librosa, gcsfs, s3fs, ingest.pipeline" \
    && python -c "from ingest import config; config.load()" \
    && ffprobe -version >/dev/null

# Warm librosa's numba cache so each worker's first mel is not a 20 s compile.
RUN python -c "import numpy as np, librosa; librosa.feature.melspectrogram(y=np.zeros(22050, np.float32), sr=22050)"

ENTRYPOINT ["/opt/apache/beam/boot"]
