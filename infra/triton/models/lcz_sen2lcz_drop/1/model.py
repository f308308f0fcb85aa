"""Triton Python-backend model: runs a TorchScript classifier on CPU or GPU.

Requests that Triton's dynamic batcher groups are run as one forward pass; a request
with a wrong shape fails alone, with an error, and the others are answered.
"""

import json
import os

import numpy as np
import torch
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        name = config["parameters"]["torchscript"]["string_value"]
        path = os.path.join(args["model_repository"], args["model_version"], name)
        if not os.path.exists(path):
            raise pb_utils.TritonModelException(
                f"{path} not found: run `revisit models export` to write it"
            )
        on_gpu = args.get("model_instance_kind") == "GPU" and torch.cuda.is_available()
        self.device = torch.device(f"cuda:{args['model_instance_device_id']}" if on_gpu else "cpu")
        self.model = torch.jit.load(path, map_location=self.device).eval()
        self.input_name = config["input"][0]["name"]
        self.output_name = config["output"][0]["name"]
        self.sample_dims = [int(d) for d in config["input"][0]["dims"]]

    def execute(self, requests):
        arrays, errors = [], []
        for request in requests:
            array = pb_utils.get_input_tensor_by_name(request, self.input_name).as_numpy()
            if list(array.shape[1:]) != self.sample_dims or not np.isfinite(array).all():
                errors.append(
                    f"{self.input_name} must be finite float32 (N, {self.sample_dims}), "
                    f"got {array.dtype}{array.shape}"
                )
                arrays.append(None)
            else:
                errors.append(None)
                arrays.append(array)
        good = [a for a in arrays if a is not None]
        outputs = []
        if good:
            with torch.inference_mode():
                batch = torch.from_numpy(np.concatenate(good)).to(self.device)
                result = self.model(batch).float().cpu().numpy()
            sizes = np.cumsum([len(a) for a in good])[:-1]
            outputs = np.split(result, sizes)
        responses, taken = [], 0
        for error in errors:
            if error is not None:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(error)))
                continue
            tensor = pb_utils.Tensor(self.output_name, outputs[taken])
            taken += 1
            responses.append(pb_utils.InferenceResponse(output_tensors=[tensor]))
        return responses
