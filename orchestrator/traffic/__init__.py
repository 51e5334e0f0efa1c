"""ESP traffic: scapy templates, a cryptography fast path, a paced raw-socket sender.

Modules: sa (specs), scenario (N SAs/policies/flows), template (scapy), fastpath
(encryption), link (sockets), sender (pacing loop), run (jobs, TrafficRun subprocess).
"""
