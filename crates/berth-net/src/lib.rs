//! Network adapter for berth: the ENI's link by MAC and its policy routing, through rtnetlink
