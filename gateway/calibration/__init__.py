"""Counting dense crowds, the gateway's side: the model files, each camera's live counter, and
calibration from a recording (`gateway calibrate count`) or from the page's 标注人数 tool.

The counting model itself is pure numpy/OpenCV and lives in `gateway.analytics.counting`.
"""
