"""Job runners: where and how job processes run."""

from .base import *
from .registry import *
