"""Triton Python-backend model: runs a TorchScript model of revisit on CPU or GPU.

`revisit models build` copies this file into every version directory of the model
repository, next to the version's model.pt; config.pbtxt names the inputs (in the
order of the TorchScript forward's arguments) and the output.

- Requests that the dynamic batcher groups are run as one forward pass.
- Dimensions declared -1 (the dates of a season, the pixels of a set) may differ
  between requests: each such axis is padded with zeros to the longest of the group.
  The models treat zeros in their masks as "not observed", so padding changes nothing.
- A request with a wrong rank, a wrong fixed dimension or a non-finite value fails
  alone, with an error saying which input; the others are answered. If the grouped
  forward pass fails (inputs of one request disagree with each other), each request
  is run alone so that only the faulty one gets the error.
- On CPU, each instance (a stub process of its own) runs torch with the usable cores
  divided among the model's CPU instances (`OMP_NUM_THREADS`, when set, wins), and
  glibc keeps the memory a forward pass frees for the next one (`_keep_freed_memory`).
"""

import ctypes
import json
import math
import os

import numpy as np
import torch
import triton_python_backend_utils as pb_utils


# mallopt(3) parameters
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
# cgroup v2: "<quota> <period>" in microseconds, or "max <period>"
CPU_MAX = "/sys/fs/cgroup/cpu.max"


def _keep_freed_memory():
    """Keep the memory a forward pass frees for the next request.

    A forward pass allocates and frees megabytes of activations. With glibc's defaults
    the large ones are mmapped and unmapped on every call and the freed top of the heap
    is given back, so each request faults all its pages in again: PSE-TAE at batch 64
    took 19-20 ms a call instead of 8.5 ms. The thresholds keep blocks up to 32 MiB (the
    most glibc allows) on the heap and up to 256 MiB of it free for the next call.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: its own allocator, nothing to tune
        return
    libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)
    libc.mallopt(M_TRIM_THRESHOLD, 256 << 20)


def _usable_cpus():
    """Cores this process may use: its affinity, capped by a cgroup v2 CPU quota."""
    cpus = len(os.sched_getaffinity(0))
    try:
        with open(CPU_MAX) as f:
            quota, period = f.read().split()
    except (OSError, ValueError):
        return cpus
    if quota == "max":
        return cpus
    return max(1, min(cpus, math.ceil(int(quota) / int(period))))


def _cpu_threads(config):
    """torch threads of one CPU instance: the usable cores shared by the instances."""
    instances = sum(
        int(group.get("count", 1))
        for group in config.get("instance_group", [])
        if group.get("kind") == "KIND_CPU"
    )
    return max(1, _usable_cpus() // max(instances, 1))


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        _keep_freed_memory()
        name = config["parameters"]["torchscript"]["string_value"]
        path = os.path.join(args["model_repository"], args["model_version"], name)
        if not os.path.exists(path):
            raise pb_utils.TritonModelException(
                f"{path} not found: run `revisit models build` to write it"
            )
        on_gpu = args.get("model_instance_kind") == "GPU" and torch.cuda.is_available()
        self.device = torch.device(f"cuda:{args['model_instance_device_id']}" if on_gpu else "cpu")
        if not on_gpu and "OMP_NUM_THREADS" not in os.environ:
            torch.set_num_threads(_cpu_threads(config))
        self.model = torch.jit.load(path, map_location=self.device).eval()
        self.inputs = [(i["name"], [int(d) for d in i["dims"]]) for i in config["input"]]
        self.output_name = config["output"][0]["name"]

    def _check(self, request):
        arrays = []
        for name, dims in self.inputs:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                return None, f"input {name} is missing"
            array = tensor.as_numpy()
            shape = list(array.shape[1:])
            fits = len(shape) == len(dims) and all(d in (-1, s) for d, s in zip(dims, shape))
            if not fits or array.dtype != np.float32 or not np.isfinite(array).all():
                return None, (
                    f"{name} must be finite float32 (N, {dims}) (-1: any length), "
                    f"got {array.dtype}{array.shape}"
                )
            arrays.append(array)
        sizes = {len(a) for a in arrays}
        if len(sizes) != 1:
            return None, f"inputs have different batch sizes {sorted(sizes)}"
        return arrays, None

    def _forward(self, groups):
        """One forward pass over the requests' inputs, padded; per-request outputs."""
        columns = []
        for k, (_, dims) in enumerate(self.inputs):
            parts = [g[k] for g in groups]
            target = [max(p.shape[1 + a] for p in parts) for a in range(len(dims))]
            padded = []
            for p in parts:
                pad = [(0, 0)] + [(0, t - s) for t, s in zip(target, p.shape[1:])]
                padded.append(np.pad(p, pad) if any(w for _, w in pad) else p)
            columns.append(torch.from_numpy(np.concatenate(padded)).to(self.device))
        with torch.inference_mode():
            result = self.model(*columns).float().cpu().numpy()
        sizes = np.cumsum([len(g[0]) for g in groups])[:-1]
        return np.split(result, sizes)

    def execute(self, requests):
        checked = [self._check(r) for r in requests]
        good = [arrays for arrays, error in checked if error is None]
        outputs, errors = [], {}
        if good:
            try:
                outputs = self._forward(good)
            except RuntimeError:
                outputs = []
                for i, arrays in enumerate(good):
                    try:
                        outputs.extend(self._forward([arrays]))
                    except RuntimeError as exc:
                        outputs.append(None)
                        errors[i] = f"the model rejected the inputs: {str(exc).splitlines()[0]}"
        responses, taken = [], 0
        for _, error in checked:
            if error is None:
                error = errors.get(taken)
                output = outputs[taken]
                taken += 1
            if error is not None:
                # INVALID_ARG: the client treats the request as poison, not as an outage
                invalid = pb_utils.TritonError(error, pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(error=invalid))
                continue
            tensor = pb_utils.Tensor(self.output_name, output)
            responses.append(pb_utils.InferenceResponse(output_tensors=[tensor]))
        return responses
