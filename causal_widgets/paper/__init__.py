"""Mattsson, Michaud & Hoel (2020) reproduced: experiments, toy layers, notebooks and figures."""
