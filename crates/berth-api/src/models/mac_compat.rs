//! The container-wide `Config.MacAddress` (API < 1.44, still sent by docker-py) moved to the
//! primary endpoint's `EndpointSettings.MacAddress`, with dockerd's rules per API version
//! (moby `handleMACAddressBC`).

use crate::models::{ContainerCreateRequest, EndpointSettings};
use crate::{ApiError, ApiVersion};

impl ContainerCreateRequest {
    /// Moves `Config.MacAddress` to the endpoint of the network in `NetworkMode`, as dockerd
    /// does before creating: before API 1.44 the container-wide field is the only one (an
    /// endpoint's is dropped); from 1.44 it is deprecated, migrated with a warning (returned),
    /// and must agree with the endpoint's.
    pub fn migrate_mac_address(&mut self, version: ApiVersion) -> Result<Option<String>, ApiError> {
        let mode = self
            .host_config
            .as_ref()
            .map(|h| h.network_mode.clone())
            .unwrap_or_default();
        // The default mode is the default bridge (dockerd normalises it first, moving a
        // `default` endpoint with it).
        let defaulted = mode.is_default();
        let name = if defaulted {
            "bridge".to_string()
        } else {
            mode.to_string()
        };
        let bridge_or_user = !mode.shares_netns();
        let endpoints = &mut self
            .networking_config
            .get_or_insert_with(Default::default)
            .endpoints_config;
        if defaulted && let Some(ep) = endpoints.remove("default") {
            endpoints.entry(name.clone()).or_insert(ep);
        }
        let wide = self.config.mac_address.clone().unwrap_or_default();
        if !version.at_least(1, 44) {
            if wide.is_empty() {
                // The old API had no per-endpoint address: one sent is ignored.
                for ep in endpoints.values_mut() {
                    ep.mac_address.clear();
                }
                return Ok(None);
            }
            if !bridge_or_user {
                return Err(ApiError::invalid(
                    "conflicting options: mac-address and the network mode",
                ));
            }
            if endpoints.is_empty() {
                endpoints.insert(name, EndpointSettings::default());
            }
            for ep in endpoints.values_mut() {
                ep.mac_address = wide.clone();
            }
            return Ok(None);
        }
        if wide.is_empty() {
            return Ok(None);
        }
        if bridge_or_user {
            if endpoints.is_empty() {
                endpoints.insert(
                    name,
                    EndpointSettings {
                        mac_address: wide.clone(),
                        ..Default::default()
                    },
                );
            } else {
                let Some(ep) = endpoints.get_mut(&name) else {
                    return Err(ApiError::invalid(
                        "if a container-wide MAC address is supplied, HostConfig.NetworkMode must match the identity of a network in NetworkSettings.Networks",
                    ));
                };
                if ep.mac_address.is_empty() {
                    ep.mac_address = wide.clone();
                } else if ep.mac_address != wide {
                    return Err(ApiError::invalid(
                        "the container-wide MAC address must match the endpoint-specific MAC address for the main network, or be left empty",
                    ));
                }
            }
        }
        self.config.mac_address = None;
        Ok(Some(
            "The container-wide MacAddress field is now deprecated. It should be specified in EndpointsConfig instead."
                .to_string(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(body: &str) -> ContainerCreateRequest {
        serde_json::from_str(body).unwrap()
    }

    fn v(minor: u32) -> ApiVersion {
        ApiVersion { major: 1, minor }
    }

    fn mac_of(r: &ContainerCreateRequest, net: &str) -> String {
        r.networking_config.as_ref().unwrap().endpoints_config[net]
            .mac_address
            .clone()
    }

    #[test]
    fn old_api_moves_the_container_wide_address() {
        let mut r = req(r#"{"Image":"x","MacAddress":"02:00:00:00:00:07"}"#);
        assert_eq!(r.migrate_mac_address(v(43)).unwrap(), None);
        assert_eq!(mac_of(&r, "bridge"), "02:00:00:00:00:07");
        let mut r = req(
            r#"{"Image":"x","MacAddress":"02:00:00:00:00:07","HostConfig":{"NetworkMode":"net1"},
               "NetworkingConfig":{"EndpointsConfig":{"net1":{"Aliases":["a"]}}}}"#,
        );
        r.migrate_mac_address(v(41)).unwrap();
        assert_eq!(mac_of(&r, "net1"), "02:00:00:00:00:07");
        // An endpoint's address alone is ignored before 1.44.
        let mut r = req(
            r#"{"Image":"x","NetworkingConfig":{"EndpointsConfig":{"bridge":{"MacAddress":"02:00:00:00:00:08"}}}}"#,
        );
        r.migrate_mac_address(v(43)).unwrap();
        assert_eq!(mac_of(&r, "bridge"), "");
        let mut r = req(
            r#"{"Image":"x","MacAddress":"02:00:00:00:00:07","HostConfig":{"NetworkMode":"host"}}"#,
        );
        assert_eq!(
            r.migrate_mac_address(v(43)).unwrap_err().to_string(),
            "conflicting options: mac-address and the network mode"
        );
    }

    #[test]
    fn new_api_migrates_with_a_warning_and_checks_agreement() {
        let mut r = req(r#"{"Image":"x","MacAddress":"02:00:00:00:00:07"}"#);
        assert!(r.migrate_mac_address(v(44)).unwrap().is_some());
        assert_eq!(mac_of(&r, "bridge"), "02:00:00:00:00:07");
        assert_eq!(r.config.mac_address, None);
        let mut r = req(
            r#"{"Image":"x","NetworkingConfig":{"EndpointsConfig":{"default":{"MacAddress":"02:00:00:00:00:08"}}}}"#,
        );
        assert_eq!(r.migrate_mac_address(v(51)).unwrap(), None);
        assert_eq!(mac_of(&r, "bridge"), "02:00:00:00:00:08");
        let mut r = req(
            r#"{"Image":"x","MacAddress":"02:00:00:00:00:07","NetworkingConfig":{"EndpointsConfig":{"bridge":{"MacAddress":"02:00:00:00:00:08"}}}}"#,
        );
        assert!(r.migrate_mac_address(v(44)).is_err());
        let mut r = req(
            r#"{"Image":"x","MacAddress":"02:00:00:00:00:07","HostConfig":{"NetworkMode":"a"},"NetworkingConfig":{"EndpointsConfig":{"b":{}}}}"#,
        );
        assert!(r.migrate_mac_address(v(44)).is_err());
    }
}
