//! The control process: interfaces, classifier, multicast membership, Unix-socket API.
