"""Datasets, the query/evaluation split, corruptions and the on-device batch loader.

Protocol section 2. Public API re-exported here; see the submodules for details:
``info`` (DatasetInfo, DATASETS, split), ``sources`` (load, cache, synthetic data, report),
``loader`` (GpuLoader), ``corruptions`` (gaussian_noise, brightness, query_set).
"""
from .corruptions import QUERY_SET_COPIES, brightness, brightness_via_hsv, gaussian_noise, hsv_to_rgb, query_set, rgb_to_hsv
from .info import DATASETS, SPLIT_SEED, DatasetInfo, get_info, query_eval_split, stratified_subset
from .loader import GpuLoader, colour_jitter, random_crop_flip
from .sources import (DatasetNotFoundError, ImageSet, channel_stats, check_report, load, make_synthetic,
                      resolve_cache_dir, resolve_data_dir)

__all__ = [
    "DatasetInfo", "DATASETS", "get_info", "SPLIT_SEED", "query_eval_split", "stratified_subset",
    "ImageSet", "DatasetNotFoundError", "resolve_data_dir", "resolve_cache_dir", "load",
    "make_synthetic", "channel_stats", "check_report",
    "GpuLoader", "random_crop_flip", "colour_jitter",
    "rgb_to_hsv", "hsv_to_rgb", "gaussian_noise", "brightness", "brightness_via_hsv", "query_set", "QUERY_SET_COPIES",
]
